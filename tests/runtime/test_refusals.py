"""Who may act on runs, through the engine's API: identities are configured users only (a role's
name is no one), and every refused decision or command is recorded in the run's log, whatever
the run's status and whoever holds it."""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from cadenza import (
    ApprovalDenied,
    CadenzaError,
    Directory,
    Engine,
    MemoryStore,
    SQLiteStore,
    Workflow,
    WorkflowStatus,
)
from cadenza.core.events import Event, EventType
from cadenza.store.base import Store

PEOPLE = Directory(
    {
        "olivia": frozenset({"compliance_officer"}),
        "omar": frozenset({"compliance_officer"}),
        "ann": frozenset({"operator"}),
        "victor": frozenset({"viewer"}),
    }
)


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def mark(tag: str) -> Any:
    def step(state: S) -> S:
        return {"log": [tag]}

    step.__name__ = tag
    return step


def payout(quorum: int = 1, **config: Any) -> Workflow:
    wf = Workflow("payout", state=S, config=config or None)
    wf.task(mark("prepare"))
    wf.approval("review", approvers=["compliance_officer"], quorum=quorum)
    wf.task(mark("pay"))
    return wf


def sleepy(**config: Any) -> Workflow:
    """Stops RUNNING, waiting for a signal, held by nobody: a run that may be paused."""
    wf = Workflow("sleepy", state=S, config=config or None)
    wf.task(mark("prepare"))
    wf.wait("later", signal="go", seconds=3600)
    return wf


def two_reviews() -> Workflow:
    wf = Workflow("two_reviews", state=S)
    wf.approval("first", approvers=["compliance_officer"])
    wf.approval("second", approvers=["compliance_officer"])
    return wf


def failing() -> Workflow:
    wf = Workflow("failing", state=S, config={"allowed_users": ["operator"]})
    wf.task(mark("prepare"))

    @wf.step
    def explode(state: S) -> S:
        raise RuntimeError("down")

    return wf


async def refusals(store: Store, run_id: str, kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in await store.read_events(run_id) if e.type is kind]  # type: ignore[arg-type]


# -- a role's name is not an identity -------------------------------------------------------------


async def test_a_role_name_does_not_count_toward_a_quorum() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        waiting = await engine.run(payout(quorum=2), {})
        one = await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        assert one.status is WorkflowStatus.WAITING_APPROVAL
        with pytest.raises(ApprovalDenied, match=r"unknown user 'compliance_officer'.*is a role"):
            await engine.decide(waiting.run_id, "review", actor="compliance_officer", approve=True)
        still = await engine.result(waiting.run_id)
        refused = await refusals(engine.store, waiting.run_id, EventType.APPROVAL_REFUSED)
    assert still.status is WorkflowStatus.WAITING_APPROVAL and still.state["log"] == ["prepare"]
    assert [(r["actor"], r["approve"]) for r in refused] == [("compliance_officer", True)]
    assert "is a role" in refused[0]["reason"]


@pytest.mark.parametrize("command", ["cancel", "pause", "unpause", "redrive", "fork"])
async def test_a_role_name_may_not_control_runs(command: str) -> None:
    wf = {
        "redrive": failing(),
        "fork": failing(),
        "cancel": payout(allowed_users=["operator"]),
    }.get(command, sleepy(allowed_users=["operator"]))
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        run = await engine.run(wf, {}, actor="ann")
        if command == "unpause":
            await engine.pause(run.run_id, actor="ann")
        act = {
            "cancel": lambda who: engine.cancel(run.run_id, actor=who),
            "pause": lambda who: engine.pause(run.run_id, actor=who),
            "unpause": lambda who: engine.unpause(run.run_id, actor=who),
            "redrive": lambda who: engine.redrive(run.run_id, actor=who),
            "fork": lambda who: engine.fork(run.run_id, after="prepare", actor=who),
        }[command]
        for who in ("operator", "compliance_officer", "nobody"):
            with pytest.raises(ApprovalDenied, match=f"unknown user '{who}'"):
                await act(who)
        with pytest.raises(ApprovalDenied, match="victor may not"):
            await act("victor")
        before = await engine.store.get_run(run.run_id)
        refused = await refusals(engine.store, run.run_id, EventType.REFUSED)
        await act("ann")  # the user who holds the role may
    assert before.status is run.status or command == "unpause"
    assert [r["actor"] for r in refused] == ["operator", "compliance_officer", "nobody", "victor"]
    assert {r["command"] for r in refused} == {"re-drive" if command == "redrive" else command}


async def test_a_role_name_may_not_start_a_guarded_workflow() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        with pytest.raises(ApprovalDenied, match="unknown user 'operator'"):
            await engine.run(payout(allowed_users=["operator"]), {}, actor="operator")
        with pytest.raises(ApprovalDenied, match="say who you are"):
            await engine.run(payout(allowed_users=["operator"]), {})
        assert await engine.store.list_runs() == []
        assert (await engine.run(payout(allowed_users=["operator"]), {}, actor="ann")).run_id


async def test_a_user_named_in_allowed_users_matches_by_name() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        run = await engine.run(payout(allowed_users=["victor"]), {}, actor="victor")
        with pytest.raises(ApprovalDenied, match="olivia may not cancel"):
            await engine.cancel(run.run_id, actor="olivia")
        assert (await engine.cancel(run.run_id, actor="victor")).status is WorkflowStatus.CANCELLED


async def test_a_named_actor_must_be_a_user_even_where_nothing_is_guarded() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        with pytest.raises(ApprovalDenied, match="unknown user 'operator'"):
            await engine.run(payout(), {}, actor="operator")
        run = await engine.run(payout(), {}, actor="victor")
        with pytest.raises(ApprovalDenied, match=r"unknown user 'mallory'.*not a configured user"):
            await engine.cancel(run.run_id, actor="mallory")
        refused = await refusals(engine.store, run.run_id, EventType.REFUSED)
        cancelled = await engine.cancel(run.run_id)  # anyone may, without a name
    assert [(r["actor"], r["command"]) for r in refused] == [("mallory", "cancel")]
    assert cancelled.status is WorkflowStatus.CANCELLED


async def test_without_configured_users_names_are_labels_and_nobody_decides() -> None:
    nobody = Directory()
    async with Engine(MemoryStore(), directory=nobody) as engine:
        run = await engine.run(payout(), {}, actor="ops-bot")
        with pytest.raises(ApprovalDenied, match="no users are configured"):
            await engine.decide(run.run_id, "review", actor="olivia", approve=True)
        with pytest.raises(ApprovalDenied, match="no users are configured"):
            await engine.run(payout(allowed_users=["operator"]), {}, actor="ann")
        assert (await engine.cancel(run.run_id, actor="ops-bot")).status is (
            WorkflowStatus.CANCELLED
        )


# -- refused decisions are recorded --------------------------------------------------------------


async def test_deciding_twice_and_rejecting_after_approving_are_refused_and_recorded() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        waiting = await engine.run(payout(quorum=2), {})
        await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        with pytest.raises(CadenzaError, match=r"olivia has already decided on 'review' \(appr"):
            await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        with pytest.raises(CadenzaError, match="a decision is final"):
            await engine.decide(waiting.run_id, "review", actor="olivia", approve=False)
        refused = await refusals(engine.store, waiting.run_id, EventType.APPROVAL_REFUSED)
        done = await engine.decide(waiting.run_id, "review", actor="omar", approve=True)
    assert [(r["actor"], r["approve"]) for r in refused] == [("olivia", True), ("olivia", False)]
    assert all("already decided" in r["reason"] for r in refused)
    assert done.ok and done.state["log"] == ["prepare", "pay"]


async def test_deciding_an_approval_already_decided_is_refused_and_recorded() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        waiting = await engine.run(two_reviews(), {})
        await engine.decide(waiting.run_id, "first", actor="olivia", approve=True)
        with pytest.raises(CadenzaError, match=r"step 'first' .* not waiting.*waiting: second"):
            await engine.decide(waiting.run_id, "first", actor="omar", approve=False)
        events = await engine.store.read_events(waiting.run_id)
        record = await engine.store.get_run(waiting.run_id)
    (refused,) = [e for e in events if e.type is EventType.APPROVAL_REFUSED]
    assert refused.path == "first" and refused.data["actor"] == "omar"
    assert record.status is WorkflowStatus.WAITING_APPROVAL and record.owner is None


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
async def test_deciding_on_a_finished_run_is_refused_and_recorded(end: str, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    async with Engine(SQLiteStore(db), directory=PEOPLE) as engine:
        waiting = await engine.run(payout(), {})
        if end == "cancelled":
            finished = await engine.cancel(waiting.run_id)
        else:
            finished = await engine.decide(
                waiting.run_id, "review", actor="olivia", approve=end == "completed"
            )
        finished = await engine.result(waiting.run_id)
        with pytest.raises(CadenzaError, match=f"is {end.upper()}, not waiting for an approval"):
            await engine.decide(waiting.run_id, "review", actor="omar", approve=True)
        with pytest.raises(ApprovalDenied, match="unknown user 'compliance_officer'"):
            await engine.decide(waiting.run_id, "review", actor="compliance_officer", approve=True)
    async with Engine(SQLiteStore(db), directory=PEOPLE) as later:  # what another process reads
        record = await later.store.get_run(waiting.run_id)
        result = await later.result(waiting.run_id)
        refused = await refusals(later.store, waiting.run_id, EventType.APPROVAL_REFUSED)
    assert [r["actor"] for r in refused] == ["omar", "compliance_officer"]
    assert record.status is finished.status and record.wake_at is None and record.owner is None
    assert result.state == finished.state and result.error == finished.error


async def test_deciding_on_a_run_executing_here_is_recorded_through_its_execution() -> None:
    import asyncio

    release = asyncio.Event()
    started = asyncio.Event()
    wf = Workflow("busy", state=S)

    @wf.step
    async def slow(state: S) -> S:
        started.set()
        await release.wait()
        return {"log": ["slow"]}

    wf.approval("review", approvers=["compliance_officer"])
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        run_id = await engine.start(wf, {})
        await started.wait()
        with pytest.raises(CadenzaError, match="is RUNNING, not waiting for an approval"):
            await engine.decide(run_id, "review", actor="olivia", approve=True)
        with pytest.raises(ApprovalDenied, match="unknown user 'operator'"):
            await engine.pause(run_id, actor="operator")
        release.set()
        waiting = await engine.wait(run_id)
        events = await engine.store.read_events(run_id)
    assert waiting.status is WorkflowStatus.WAITING_APPROVAL
    kinds = [e.type for e in events]
    assert EventType.APPROVAL_REFUSED in kinds and EventType.REFUSED in kinds
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_refusal_on_a_run_another_engine_holds_is_logged_not_written() -> None:
    store = MemoryStore()
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(payout(), {})
        taken = await store.claim(waiting.run_id, "elsewhere", lease_until=time.time() + 60)
        assert taken is not None
        with pytest.raises(ApprovalDenied, match="unknown user 'compliance_officer'"):
            await engine.decide(waiting.run_id, "review", actor="compliance_officer", approve=True)
        record = await store.get_run(waiting.run_id)
        refused = await refusals(store, waiting.run_id, EventType.APPROVAL_REFUSED)
    assert refused == [] and (record.owner, record.epoch) == ("elsewhere", taken)


async def test_observers_see_refusals_recorded_on_runs_nobody_holds() -> None:
    seen: list[Event] = []

    class Watch:
        def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
            seen.append(event)

    async with Engine(MemoryStore(), directory=PEOPLE, observers=[Watch()]) as engine:
        waiting = await engine.run(payout(), {})
        with pytest.raises(ApprovalDenied):
            await engine.decide(waiting.run_id, "review", actor="victor", approve=True)
    assert [e.type for e in seen][-1] is EventType.APPROVAL_REFUSED


async def test_refusals_on_a_run_are_not_copied_into_its_re_drive() -> None:
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        failed = await engine.run(failing(), {}, actor="ann")
        with pytest.raises(ApprovalDenied):
            await engine.redrive(failed.run_id, actor="victor")
        again = await engine.redrive(failed.run_id, actor="ann")
        copied = await engine.store.read_events(again.run_id)
        source = await refusals(engine.store, failed.run_id, EventType.REFUSED)
    assert [r["actor"] for r in source] == ["victor"]
    assert not [e for e in copied if e.type is EventType.REFUSED]


async def test_an_engine_without_the_definition_checks_the_allowed_users_the_run_recorded(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    async with Engine(SQLiteStore(db), directory=PEOPLE) as engine:
        failed = await engine.run(failing(), {}, actor="ann")
    async with Engine(SQLiteStore(db), directory=PEOPLE) as stranger:  # no definition here
        with pytest.raises(ApprovalDenied, match="victor"):
            await stranger.redrive(failed.run_id, actor="victor")
        with pytest.raises(ApprovalDenied):
            await stranger.cancel(failed.run_id)
        refused = await refusals(stranger.store, failed.run_id, EventType.REFUSED)
    assert [r["actor"] for r in refused] == ["victor", ""]
