"""``Engine.pending_approvals`` on every store: the table of pending approvals follows every
way a request opens and stops waiting (decisions below and at the quorum, a rejection, a
timeout, an escalation, a run cancelled while waiting, a re-drive or fork copying a log),
and after a random sequence of those it lists exactly what the fold of the logs leaves open
(the fold ``decide`` itself checks against)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza import CadenzaError, Directory, Engine, Workflow, WorkflowStatus
from cadenza.core.ids import RunId
from cadenza.runtime.progress import Progress
from cadenza.steps.approval import decided
from cadenza.store._approvals import stored_difference
from cadenza.store.base import Store

if TYPE_CHECKING:
    from conftest import StoreHarness  # tests/conformance/conftest.py

W = WorkflowStatus
PEOPLE = Directory(
    {
        "olivia": frozenset({"officer"}),
        "omar": frozenset({"officer"}),
        "lea": frozenset({"lead"}),
        "victor": frozenset({"viewer"}),
    }
)


class S(TypedDict, total=False):
    amount: int


def prepare(state: S) -> S:
    return {}


def pay(state: S) -> S:
    return {}


def review(name: str = "review", *, confirm: bool = False, **approval: Any) -> Workflow:
    """prepare, the approval ``review``, (the approval ``confirm`` by a lead,) pay."""
    wf = Workflow(name, state=S)
    wf.task(prepare)
    approval.setdefault("approvers", ["officer"])
    wf.approval("review", show=["amount"], summary="check it", **approval)
    if confirm:
        wf.approval("confirm", approvers=["lead"])
    wf.task(pay)
    return wf


async def expected(engine: Engine, for_user: str | None = None) -> list[dict[str, Any]]:
    """What the listing must be, from the logs: every waiting run's log folded as the
    engine folds it to decide, its undecided requests, oldest first."""
    out = []
    store = engine.store
    for record in await store.list_runs(status=[W.WAITING_APPROVAL], limit=10_000):
        progress = Progress(reducers={}).apply_all(await store.read_events(record.run_id))
        for path, request in progress.approvals.items():
            if decided(request) is not None:
                continue
            if for_user is not None and not PEOPLE.matches(for_user, request["approvers"]):
                continue
            out.append(
                {
                    "run_id": record.run_id,
                    "workflow": record.workflow,
                    "step": path,
                    "approvers": request["approvers"],
                    "quorum": request["quorum"],
                    "approved_by": [d["actor"] for d in request["decisions"]],
                    "summary": request.get("summary"),
                    "show": request.get("show"),
                    "since": request["since"],
                    "deadline": request.get("deadline"),
                }
            )
    out.sort(key=lambda p: (p["since"], p["run_id"], p["step"]))
    return out


async def check_listing(engine: Engine) -> None:
    """The listing (all, and for each person) is what the logs say; every run's rows are the
    fold of its log (what ``audit verify`` checks)."""
    assert await engine.pending_approvals() == await expected(engine)
    for user in [*PEOPLE.users, "officer", "nobody"]:
        mine = await engine.pending_approvals(for_user=user, directory=PEOPLE)
        assert mine == await expected(engine, user if PEOPLE.is_user(user) else "-"), user
    for record in await engine.store.list_runs(limit=10_000):
        stored = await engine.store.read_stored(record.run_id)
        events = await engine.store.read_events(record.run_id)
        assert stored_difference(stored.approvals, events) is None, record.run_id


def steps_of(listing: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p["run_id"], p["step"]) for p in listing]


# -- each way a request opens and stops waiting -------------------------------------------------


async def test_a_request_is_listed_for_those_who_may_decide_it(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(), {"amount": 5})
        (pending,) = await engine.pending_approvals()
        assert pending["run_id"] == waiting.run_id and pending["show"] == {"amount": 5}
        assert len(await engine.pending_approvals(for_user="olivia")) == 1
        assert await engine.pending_approvals(for_user="victor") == []
        assert await engine.pending_approvals(for_user="officer") == [], "a role is no user"
        assert await engine.pending_approvals(for_user="nobody") == []
        await check_listing(engine)


async def test_decisions_below_the_quorum_are_shown_and_the_quorum_ends_it(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(quorum=2), {})
        await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        (pending,) = await engine.pending_approvals()
        assert pending["approved_by"] == ["olivia"]
        await check_listing(engine)
        done = await engine.decide(waiting.run_id, "review", actor="omar", approve=True)
        assert done.ok and await engine.pending_approvals() == []
        await check_listing(engine)


async def test_a_rejection_ends_it(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(quorum=2), {})
        failed = await engine.decide(waiting.run_id, "review", actor="olivia", approve=False)
        assert failed.status is W.FAILED and await engine.pending_approvals() == []
        await check_listing(engine)


async def test_a_run_cancelled_while_waiting_leaves_nothing_pending(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(), {})
        await engine.cancel(waiting.run_id)
        assert await engine.pending_approvals() == []
        await check_listing(engine)


@pytest.mark.parametrize("policy", ["approve", "reject"])
async def test_a_timeout_decides_it(store: Store, policy: str) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(timeout=0.05, on_timeout=policy), {})
        assert len(await engine.pending_approvals()) == 1
        await asyncio.sleep(0.1)
        await engine.resume(waiting.run_id)
        assert await engine.pending_approvals() == []
        await check_listing(engine)


async def test_an_escalation_hands_it_to_others(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(timeout=0.05, on_timeout="escalate:lead"), {})
        await asyncio.sleep(0.1)
        await engine.resume(waiting.run_id)
        assert await engine.pending_approvals(for_user="olivia") == []
        (pending,) = await engine.pending_approvals(for_user="lea")
        assert pending["approvers"] == ["lead"]
        await check_listing(engine)


async def test_a_redrive_and_a_fork_wait_again(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        first = await engine.run(review(), {"amount": 1})
        since = (await engine.pending_approvals())[0]["since"]
        await engine.cancel(first.run_id)
        again = await engine.redrive(first.run_id)
        assert again.status is W.WAITING_APPROVAL
        (pending,) = await engine.pending_approvals()
        assert pending["run_id"] == again.run_id and pending["since"] == since
        fork = await engine.fork(first.run_id, after="prepare")
        assert steps_of(await engine.pending_approvals()) == [
            (again.run_id, "review"),
            (fork.run_id, "review"),
        ]
        await check_listing(engine)


async def test_a_run_waiting_again_lists_only_its_new_request(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(quorum=2, confirm=True), {})
        await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        again = await engine.decide(waiting.run_id, "review", actor="omar", approve=True)
        assert again.status is W.WAITING_APPROVAL
        assert steps_of(await engine.pending_approvals()) == [(waiting.run_id, "confirm")]
        await check_listing(engine)


async def test_pages_follow_one_another(store: Store) -> None:
    async with Engine(store, directory=PEOPLE) as engine:
        wf = review()
        for i in range(5):
            await engine.run(wf, {"amount": i})
        everything = await engine.pending_approvals()
        pages: list[dict[str, Any]] = []
        after = None
        while page := await engine.pending_approvals(for_user="omar", limit=2, after=after):
            pages += page
            after = page[-1]
        assert pages == everything and len(pages) == 5


# -- a random sequence of operations ------------------------------------------------------------

FLOWS = {
    "one": review("one"),
    "twice": review("twice", quorum=2, approvers=["officer", "lead"], confirm=True),
    "late": review("late", timeout=0.02, on_timeout="escalate:lead"),
    "expiring": review("expiring", timeout=0.02, on_timeout="reject"),
}
USERS = ["olivia", "omar", "lea"]  # victor, who may decide nothing: "review" on any run
runs = st.integers(0, 3)  # which of the runs so far (modulo their number)
# A decision on the step the run waits for, if it waits (else on "review"), or on "review"
# whatever it does (then mostly refused, which changes nothing but must be seen to).
decisions = st.tuples(
    st.sampled_from(["approve", "approve", "reject"]),
    runs,
    st.sampled_from(USERS),
    st.sampled_from(["waiting", "waiting", "waiting", "review"]),
)
starts = st.tuples(st.just("start"), st.sampled_from(sorted(FLOWS)))
# A few runs first, then anything: decisions are drawn most often, as quorums need several.
operations = st.builds(
    lambda first, then: first + then,
    st.lists(starts, min_size=1, max_size=3),
    st.lists(
        st.one_of(
            decisions,
            decisions,
            decisions,
            starts,
            st.tuples(st.sampled_from(["cancel", "expire", "redrive", "fork"]), runs),
        ),
        min_size=4,
        max_size=14,
    ),
)


async def scenario(store: Store, ops: list[tuple[Any, ...]]) -> None:
    runs: list[RunId] = []
    async with Engine(store, directory=PEOPLE) as engine:
        for wf in FLOWS.values():
            engine.register(wf)
        for op in ops:
            kind = op[0]
            if kind == "start":
                runs.append((await engine.run(FLOWS[op[1]], {"amount": len(runs)})).run_id)
                continue
            if not runs:
                continue
            run_id = runs[op[1] % len(runs)]
            with contextlib.suppress(CadenzaError):  # refused: not waiting, not allowed, ...
                if kind in ("approve", "reject"):
                    step = op[3]
                    if step == "waiting":
                        listed = await engine.pending_approvals()
                        step = next((p["step"] for p in listed if p["run_id"] == run_id), "review")
                    await engine.decide(run_id, step, actor=op[2], approve=kind == "approve")
                elif kind == "cancel":
                    await engine.cancel(run_id)
                elif kind == "expire":
                    await asyncio.sleep(0.03)
                    await engine.resume(run_id)
                elif kind == "redrive":
                    runs.append((await engine.redrive(run_id)).run_id)
                else:
                    runs.append((await engine.fork(run_id, after="prepare")).run_id)
            await check_listing(engine)


_examples = itertools.count()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_the_listing_is_the_fold_of_the_logs_after_any_operations(
    store_harness: StoreHarness, tmp_path: Path, ops: list[tuple[Any, ...]]
) -> None:
    # a fresh store of the same kind for each example
    folder = tmp_path / f"example{next(_examples)}"
    folder.mkdir()
    harness = type(store_harness)(folder)  # type: ignore[call-arg]

    async def main() -> None:
        store = await harness.start()
        try:
            await scenario(store, ops)
        finally:
            await harness.stop()

    asyncio.run(main())
