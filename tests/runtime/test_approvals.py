"""HUMAN_APPROVAL steps and signals: durable waits, roles, quorum, timeouts, refusals."""

from __future__ import annotations

import json
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
from cadenza.core.clock import ManualClock

PEOPLE = Directory(
    {
        "olivia": frozenset({"compliance_officer"}),
        "omar": frozenset({"compliance_officer"}),
        "lea": frozenset({"compliance_lead"}),
        "victor": frozenset({"viewer"}),
    }
)


class S(TypedDict, total=False):
    amount: int
    high_risk: bool
    log: Annotated[list[str], operator.add]


def mark(tag: str) -> Any:
    def step(state: S) -> S:
        return {"log": [tag]}

    step.__name__ = tag
    return step


def review_flow(**approval: Any) -> Workflow:
    wf = Workflow("review", state=S)
    wf.task(mark("prepare"))
    wf.approval("review", approvers=["compliance_officer"], show=["amount"], **approval)
    wf.task(mark("pay"))
    return wf


async def test_a_run_waits_holding_nothing_and_a_decision_continues_it() -> None:
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(review_flow(summary="check it"), {"amount": 5})
        assert waiting.status is WorkflowStatus.WAITING_APPROVAL
        assert waiting.state["log"] == ["prepare"]
        record = await engine.store.get_run(waiting.run_id)
        assert record.owner is None, "a waiting run holds no lease"
        (pending,) = await engine.pending_approvals()
        assert pending["summary"] == "check it" and pending["show"] == {"amount": 5}
        assert await engine.pending_approvals(for_user="victor", directory=PEOPLE) == []
        assert len(await engine.pending_approvals(for_user="olivia", directory=PEOPLE)) == 1
        done = await engine.decide(
            waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
        )
    assert done.ok and done.state["log"] == ["prepare", "pay"]


async def test_quorum_needs_distinct_approvers() -> None:
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(review_flow(quorum=2), {})
        one = await engine.decide(
            waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
        )
        assert one.status is WorkflowStatus.WAITING_APPROVAL
        with pytest.raises(CadenzaError, match="olivia has already decided on 'review'"):
            await engine.decide(
                waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
            )
        two = await engine.decide(
            waiting.run_id, "review", actor="omar", approve=True, directory=PEOPLE
        )
        events = await engine.store.read_events(waiting.run_id)
    assert two.ok
    done = next(e for e in events if e.type == "step_completed" and e.path == "review")
    assert done.data["approved_by"] == "olivia, omar"


async def test_refusals_are_recorded_and_change_nothing() -> None:
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(review_flow(), {})
        with pytest.raises(ApprovalDenied, match="victor may not decide 'review'"):
            await engine.decide(
                waiting.run_id, "review", actor="victor", approve=True, directory=PEOPLE
            )
        with pytest.raises(ApprovalDenied, match="unknown user 'mallory'"):
            await engine.decide(
                waiting.run_id, "review", actor="mallory", approve=True, directory=PEOPLE
            )
        with pytest.raises(CadenzaError, match=r"step 'pay' of run .* is not waiting"):
            await engine.decide(
                waiting.run_id, "pay", actor="olivia", approve=True, directory=PEOPLE
            )
        with pytest.raises(CadenzaError, match="no run with id 'gone'"):
            await engine.decide("gone", "review", actor="olivia", approve=True, directory=PEOPLE)
        events = await engine.store.read_events(waiting.run_id)
        record = await engine.store.get_run(waiting.run_id)
        done = await engine.decide(
            waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
        )
        with pytest.raises(CadenzaError, match="is COMPLETED, not waiting for an approval"):
            await engine.decide(
                waiting.run_id, "review", actor="omar", approve=True, directory=PEOPLE
            )
    assert record.status is WorkflowStatus.WAITING_APPROVAL
    assert [e.data["actor"] for e in events if e.type == "approval_refused"] == [
        "victor",
        "mallory",
        "olivia",  # on 'pay', which waits for no decision: refused too, and recorded
    ]
    assert done.ok


async def test_a_rejection_fails_the_run_after_compensation() -> None:
    undone: list[str] = []
    wf = Workflow("rejected", state=S)
    wf.task(mark("reserve"), compensate=lambda s: undone.append("reserve"))
    wf.approval("review", approvers=["compliance_officer"])
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(wf, {})
        failed = await engine.decide(
            waiting.run_id,
            "review",
            actor="omar",
            approve=False,
            comment="missing documents",
            directory=PEOPLE,
        )
    assert failed.status is WorkflowStatus.FAILED
    assert "rejected by omar (missing documents)" in (failed.error or "")
    assert undone == ["reserve"]


async def test_required_for_skips_the_approval_unless_a_flag_holds() -> None:
    wf = review_flow(required_for=["high_risk"])
    async with Engine(MemoryStore()) as engine:
        plain = await engine.run(wf, {"high_risk": False})
        risky = await engine.run(wf, {"high_risk": True})
    assert plain.ok and plain.state["log"] == ["prepare", "pay"]
    assert risky.status is WorkflowStatus.WAITING_APPROVAL


@pytest.mark.parametrize(
    ("policy", "status"), [("approve", WorkflowStatus.COMPLETED), ("reject", WorkflowStatus.FAILED)]
)
async def test_timeouts_apply_their_policy(policy: str, status: WorkflowStatus) -> None:
    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        waiting = await engine.run(review_flow(timeout=0.05, on_timeout=policy), {})
        clock.advance(0.1)
        result = await engine.resume(waiting.run_id)
    assert result.status is status
    if status is WorkflowStatus.FAILED:
        assert "rejected by system:timeout (no decision in time)" in (result.error or "")


async def test_escalation_hands_the_decision_to_another_role() -> None:
    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        waiting = await engine.run(
            review_flow(timeout=0.05, on_timeout="escalate:compliance_lead"), {}
        )
        clock.advance(0.1)
        escalated = await engine.resume(waiting.run_id)
        assert escalated.status is WorkflowStatus.WAITING_APPROVAL
        (pending,) = await engine.pending_approvals()
        assert pending["approvers"] == ["compliance_lead"]
        with pytest.raises(ApprovalDenied):
            await engine.decide(
                waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
            )
        done = await engine.decide(
            waiting.run_id, "review", actor="lea", approve=True, directory=PEOPLE
        )
    assert done.ok


async def test_another_process_decides_after_the_first_has_exited(tmp_path: Path) -> None:
    db = tmp_path / "approvals.db"
    wf = review_flow()
    async with Engine(SQLiteStore(db)) as first:
        waiting = await first.run(wf, {"amount": 3})
    async with Engine(SQLiteStore(db)) as second:
        second.register(wf)
        done = await second.decide(
            waiting.run_id, "review", actor="olivia", approve=True, directory=PEOPLE
        )
    assert done.ok and done.state["log"] == ["prepare", "pay"]


async def test_signals_are_recorded_for_the_run() -> None:
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(review_flow(), {})
        await engine.signal(waiting.run_id, "documents_received", {"count": 3}, actor="crm")
        events = await engine.store.read_events(waiting.run_id)
        done = await engine.run(review_flow(), {})
        with pytest.raises(CadenzaError):
            await engine.decide(done.run_id, "nope", actor="olivia", approve=True, directory=PEOPLE)
    (sig,) = [e for e in events if e.type == "signal"]
    assert sig.data == {"name": "documents_received", "payload": {"count": 3}, "actor": "crm"}


class Paid(TypedDict, total=False):
    payment: dict[str, Any]
    log: Annotated[list[str], operator.add]


def log(tag: str) -> Any:
    def step(state: Paid) -> Paid:
        return {"log": [tag]}

    step.__name__ = tag
    return step


async def test_a_step_waits_for_a_signal_and_gets_its_payload(tmp_path: Path) -> None:
    wf = Workflow("signalled", state=Paid)
    wf.task(log("invoice"))
    wf.wait("paid", signal="payment_received", output="payment", seconds=60)
    wf.task(log("ship"))
    db = tmp_path / "signals.db"
    async with Engine(SQLiteStore(db)) as first:
        waiting = await first.run(wf, {})
    assert waiting.status is WorkflowStatus.RUNNING and waiting.state["log"] == ["invoice"]
    async with Engine(SQLiteStore(db)) as second:
        second.register(wf)
        done = await second.signal(waiting.run_id, "payment_received", {"amount": 12})
    assert done.ok
    assert done.state["payment"] == {"amount": 12} and done.state["log"] == ["invoice", "ship"]


async def test_a_signal_wait_times_out() -> None:
    wf = Workflow("impatient", state=Paid)
    wf.wait("paid", signal="payment_received", seconds=0.05)
    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        waiting = await engine.run(wf, {})
        clock.advance(0.1)
        result = await engine.resume(waiting.run_id)
    assert result.status is WorkflowStatus.FAILED
    assert "no signal 'payment_received' within 0.05s" in (result.error or "")


async def test_requests_and_decisions_are_posted_to_notification_channels() -> None:
    from tests.http_stub import Reply, Stub

    from cadenza.observe.notify import drain

    async with Stub(Reply(200, "ok")) as slack:
        wf = review_flow(summary="wire 25,000 to ACC-1")
        wf.configure(notification_channels=[f"{slack.url}/hooks/T1"])
        async with Engine(MemoryStore()) as engine:
            waiting = await engine.run(wf, {"amount": 25000})
            await engine.decide(
                waiting.run_id,
                "review",
                actor="olivia",
                approve=True,
                comment="documents checked",
                directory=PEOPLE,
            )
            await drain()
    texts = [json.loads(r.body)["text"] for r in slack.requests]
    assert texts[0].endswith(
        "step review: approval needed: wire 25,000 to ACC-1 (approvers: compliance_officer)"
    )
    assert texts[1].endswith("step review: approved by olivia: documents checked")
    assert json.loads(slack.requests[0].body)["cadenza"]["show"] == {"amount": 25000}


async def test_require_approval_puts_a_gate_in_front_of_named_steps() -> None:
    wf = Workflow(
        "gated",
        state=S,
        config={"require_approval": ["pay"], "allowed_users": ["compliance_officer"]},
    )
    wf.task(mark("prepare"))
    wf.task(mark("pay"))
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        waiting = await engine.run(wf, {}, actor="olivia")
        assert waiting.status is WorkflowStatus.WAITING_APPROVAL
        assert waiting.state["log"] == ["prepare"]
        done = await engine.decide(waiting.run_id, "approve_pay", actor="omar", approve=True)
    assert done.ok and done.state["log"] == ["prepare", "pay"]


def test_require_approval_names_real_steps_and_needs_approvers() -> None:
    from cadenza import DefinitionError

    wf = Workflow("bad_gate", state=S, config={"require_approval": ["pya"]})
    wf.task(mark("pay"))
    with pytest.raises(DefinitionError, match=r"no step named 'pya'.*did you mean 'pay'"):
        wf.compile()
    wf.configure(require_approval=["pay"])
    with pytest.raises(DefinitionError, match="list users or roles in allowed_users"):
        wf.compile()


async def test_allowed_users_decide_who_may_start_a_run() -> None:
    wf = Workflow("restricted", state=S, config={"allowed_users": ["compliance_officer"]})
    wf.task(mark("prepare"))
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        with pytest.raises(ApprovalDenied, match="say who you are"):
            await engine.run(wf, {})
        with pytest.raises(ApprovalDenied, match="victor may not start restricted"):
            await engine.run(wf, {}, actor="victor")
        assert (await engine.run(wf, {}, actor="olivia")).ok
        assert await engine.store.list_runs(status=None) != []


async def test_resume_all_applies_timeouts_that_came_due_while_nobody_ran(tmp_path: Path) -> None:
    db = tmp_path / "due.db"
    wf = review_flow(timeout=0.05, on_timeout="approve")
    patient = review_flow(timeout=3600)
    # The first engine's clock is a minute behind the real time: by the time (the real one)
    # the second engine starts, the first run's timeout has long passed, not the second's.
    async with Engine(SQLiteStore(db), clock=ManualClock(start=time.time() - 60)) as first:
        due = await first.run(wf, {})
        later = await first.run(patient, {})
    async with Engine(SQLiteStore(db)) as second:
        second.register(wf)
        second.register(patient)
        report = await second.resume_all()
        assert [r.run_id for r in report.results] == [due.run_id]
        assert report.results[0].ok
        assert (await second.store.get_run(later.run_id)).status is WorkflowStatus.WAITING_APPROVAL


async def test_allowed_users_control_runs_and_refusals_are_recorded() -> None:
    wf = Workflow("guarded_ops", state=S, config={"allowed_users": ["compliance_officer"]})
    wf.approval("review", approvers=["compliance_lead"])
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        waiting = await engine.run(wf, {}, actor="olivia")
        with pytest.raises(ApprovalDenied, match="victor may not cancel runs of guarded_ops"):
            await engine.cancel(waiting.run_id, actor="victor")
        with pytest.raises(ApprovalDenied, match="did not say who they are"):
            await engine.cancel(waiting.run_id)
        cancelled = await engine.cancel(waiting.run_id, actor="omar")
        events = await engine.store.read_events(waiting.run_id)
    assert cancelled.status is WorkflowStatus.CANCELLED
    refused = [e.data for e in events if e.type == "refused"]
    assert [(r["actor"], r["command"]) for r in refused] == [("victor", "cancel"), ("", "cancel")]


async def test_a_rejection_can_route_to_a_step_instead_of_failing() -> None:
    wf = Workflow("routed", state=S)
    wf.task(mark("prepare"))
    wf.approval("review", approvers=["compliance_officer"], on_reject=mark("tell_customer"))
    wf.task(mark("pay"))
    wf.chain("prepare", "review", "pay")
    async with Engine(MemoryStore(), directory=PEOPLE) as engine:
        no = await engine.run(wf, {})
        rejected = await engine.decide(no.run_id, "review", actor="olivia", approve=False)
        yes = await engine.run(wf, {})
        approved = await engine.decide(yes.run_id, "review", actor="olivia", approve=True)
    assert rejected.ok and rejected.state["log"] == ["prepare", "tell_customer"]
    assert approved.ok and approved.state["log"] == ["prepare", "pay"]
