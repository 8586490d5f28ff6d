"""Saga compensation of steps inside loop iterations: a finished iteration is folded out of the
run's progress, but a step in it that declared a compensation stays listed (only its path),
so a rollback undoes it, newest first, even after a resume from a snapshot."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest

from cadenza import Engine, ExecutionContext, MemoryStore, Workflow, WorkflowStatus
from cadenza.runtime import run as run_module
from cadenza.runtime.progress import Progress


class C(TypedDict, total=False):
    n: int
    fail_in: int  # the iteration whose check fails (0: none)
    fail_after: bool  # the step after the loop fails
    held: Annotated[list[str], operator.add]


def saga(
    undone: list[str],
    calls: list[str],
    gate: asyncio.Event | None = None,
    hang: asyncio.Event | None = None,
) -> Workflow:
    """``lp`` reserves and checks five times, then ``ship``. With ``gate``, the reservation
    of iteration 3 waits for it; with ``hang``, the second compensation sets it and never
    returns (its engine is stopped then)."""

    async def reserve(state: C, ctx: ExecutionContext) -> C:
        calls.append(ctx.path)
        if gate is not None and ctx.path == "lp#3/reserve":
            await gate.wait()  # the first engine stops here
        return {"held": [ctx.path]}

    async def release(state: C, ctx: ExecutionContext) -> None:
        undone.append(ctx.path.removesuffix("!compensate"))
        if hang is not None and len(undone) == 2:
            hang.set()
            await asyncio.Event().wait()

    def check(state: C) -> C:
        n = state.get("n", 0) + 1
        if n == state.get("fail_in"):
            raise RuntimeError(f"check failed in iteration {n}")
        return {"n": n}

    def ship(state: C) -> C:
        if state.get("fail_after"):
            raise RuntimeError("shipping failed")
        return {}

    body = Workflow("body", state=C)
    body.task(reserve, compensate=release)
    body.task(check)
    wf = Workflow("saga_loop", state=C)
    wf.loop("lp", body=body, until="n >= 5", max_iterations=5)
    wf.task(ship)
    return wf


def reserved(*iterations: int) -> list[str]:
    return [f"lp#{k}/reserve" for k in iterations]


async def test_a_failure_after_the_loop_undoes_every_iteration_newest_first() -> None:
    undone: list[str] = []
    wf = saga(undone, [])
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"fail_after": True})
        events = await engine.store.read_events(result.run_id)
    assert result.status is WorkflowStatus.FAILED
    assert undone == reserved(5, 4, 3, 2, 1)
    assert "compensated lp#5/reserve, lp#4/reserve" in (result.error or "")
    progress = Progress(wf.compile().schema.reducers).apply_all(events)
    assert progress.compensable == reserved(1, 2, 3, 4, 5)
    assert not [p for p in progress.done if "#" in p], "the iterations themselves are folded"


async def test_a_failure_inside_an_iteration_undoes_that_iteration_and_those_before() -> None:
    undone: list[str] = []
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(saga(undone, []), {"fail_in": 3})
    assert result.status is WorkflowStatus.FAILED
    assert "check failed in iteration 3" in (result.error or "")
    assert undone == reserved(3, 2, 1)


async def test_compensations_survive_a_resume_from_folded_snapshots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_module, "SNAPSHOT_EVERY", 2)
    store = MemoryStore()
    undone: list[str] = []
    calls: list[str] = []
    gate = asyncio.Event()
    first = Engine(store)
    run_id = await first.start(saga(undone, calls, gate), {"fail_after": True})
    while "lp#3/reserve" not in calls:
        await asyncio.sleep(0)
    await first.close()
    assert await store.load_snapshot(run_id) is not None
    gate.set()
    async with Engine(store) as second:
        result = await second.resume(run_id, saga(undone, calls))
    assert result.status is WorkflowStatus.FAILED
    assert undone == reserved(5, 4, 3, 2, 1), "each once, newest first"
    assert calls == reserved(1, 2, 3, 3, 4, 5), "only the step in flight ran again"


async def test_a_rollback_interrupted_in_a_loop_run_resumes_without_repeating() -> None:
    store = MemoryStore()
    undone: list[str] = []
    hang = asyncio.Event()
    first = Engine(store)
    run_id = await first.start(saga(undone, [], hang=hang), {"fail_after": True})
    await hang.wait()
    await first.close()
    async with Engine(store) as second:
        result = await second.resume(run_id, saga(undone, []))
    assert result.status is WorkflowStatus.FAILED
    # lp#5 was recorded undone before the first engine stopped; lp#4 was in flight.
    assert undone == reserved(5, 4, 4, 3, 2, 1)
