from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from cadenza import (
    Engine,
    ExecutionContext,
    MemoryStore,
    RetryPolicy,
    Workflow,
    WorkflowStatus,
)


class S(TypedDict, total=False):
    done: Annotated[list[str], operator.add]
    undone: Annotated[list[str], operator.add]
    approved: bool


def doing(tag: str):
    def do(state: S) -> S:
        return {"done": [tag]}

    def undo(state: S, ctx: ExecutionContext) -> S:
        return {"undone": [f"{tag}:{ctx.idempotency_key.rsplit(':', 1)[1]}"]}

    do.__name__ = tag
    undo.__name__ = f"undo_{tag}"
    return do, undo


def fail(state: S) -> S:
    raise RuntimeError("carrier rejected the shipment")


async def test_failure_compensates_completed_steps_newest_first() -> None:
    wf = Workflow("saga", state=S)
    reserve, unreserve = doing("reserve")
    charge, refund = doing("charge")
    notify, _ = doing("notify")
    wf.task(reserve, compensate=unreserve)
    wf.task(notify)  # nothing to undo
    wf.task(charge, compensate=refund)
    wf.task(fail, name="ship")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.status is WorkflowStatus.FAILED
    assert result.state["undone"] == ["charge:charge!compensate", "reserve:reserve!compensate"]
    assert result.error == (
        "step 'ship' failed: carrier rejected the shipment "
        "(rolled back: compensated charge, reserve)"
    )
    statuses = [e.data["to"] for e in events if e.type == "status"]
    assert statuses == ["RUNNING", "ROLLBACK", "FAILED"]


async def test_parallel_branches_are_compensated_too() -> None:
    wf = Workflow("saga_parallel", state=S)
    a, undo_a = doing("a")
    b, undo_b = doing("b")
    wf.task(a, compensate=undo_a)
    branch_b = Workflow("b_branch", state=S)
    branch_b.task(b, compensate=undo_b)
    wf.parallel("fan", [branch_b, fail])
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert sorted(result.state["undone"]) == ["a:a!compensate", "b:fan[0]/b!compensate"]


async def test_a_failed_compensation_is_retried_then_reported() -> None:
    wf = Workflow("saga_broken", state=S)
    calls = 0

    def stubborn_undo(state: S) -> S:
        nonlocal calls
        calls += 1
        raise ConnectionError("refund API down")

    a, _ = doing("a")
    b, undo_b = doing("b")
    wf.task(a, compensate=stubborn_undo, retry=RetryPolicy(max_attempts=3, initial_delay=0))
    wf.task(b, compensate=undo_b)
    wf.task(fail, name="ship")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert calls == 3
    assert result.state["undone"] == ["b:b!compensate"], "the others still ran"
    assert "compensated b; compensation failed for a" in (result.error or "")
    assert [e.attempt for e in events if e.type == "compensation_failed"] == [1, 2, 3]


async def test_rollback_step_compensates_and_fails_the_run() -> None:
    wf = Workflow("explicit", state=S)
    charge, refund = doing("charge")
    approve, _ = doing("approve")
    wf.task(charge, compensate=refund)
    wf.conditional("decide", {approve: "approved"}, default="reject")
    wf.rollback("reject", reason="payment not approved")
    wf.chain(charge, "decide")
    async with Engine(MemoryStore()) as engine:
        rejected = await engine.run(wf, {"approved": False})
        approved = await engine.run(wf, {"approved": True})
    assert rejected.status is WorkflowStatus.FAILED
    assert rejected.error == (
        "rolled back by step 'reject': payment not approved (rolled back: compensated charge)"
    )
    assert rejected.state["undone"] == ["charge:charge!compensate"]
    assert approved.ok and "undone" not in approved.state


async def test_no_compensable_steps_means_no_rollback_status() -> None:
    wf = Workflow("plain_failure", state=S)
    wf.task(fail, name="ship")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert [e.data["to"] for e in events if e.type == "status"] == ["RUNNING", "FAILED"]


async def test_the_timeline_shows_what_was_compensated() -> None:
    from cadenza.runtime.timeline import timeline

    wf = Workflow("saga_timeline", state=S)
    charge, refund = doing("charge")
    wf.task(charge, compensate=refund)
    wf.task(fail, name="ship")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        rows = {r.path: r for r in timeline(await engine.store.read_events(result.run_id))}
    assert rows["charge"].status == "completed"
    assert rows["ship"].status == "failed"
    assert rows["charge!compensate"].status == "compensated"
