from __future__ import annotations

import asyncio
import threading
from typing import TypedDict

from tests.probes import Peak

from cadenza import (
    Engine,
    ExecutionContext,
    MemoryStore,
    Workflow,
    WorkflowConfiguration,
    WorkflowStatus,
)
from cadenza.core.clock import ManualClock


class S(TypedDict, total=False):
    n: int
    seen: list[str]
    keys: list[str]
    thread: str


async def test_sync_and_async_steps_run_in_order(engine: Engine) -> None:
    wf = Workflow("order", state=S)

    @wf.step
    def first(state: S) -> S:
        return {"n": state["n"] + 1, "thread": threading.current_thread().name}

    @wf.step
    async def second(state: S) -> S:
        return {"n": state["n"] * 10}

    result = await engine.run(wf, {"n": 1})
    assert result.status is WorkflowStatus.COMPLETED
    assert result.state["n"] == 20
    assert result.state["thread"].startswith("cadenza"), "sync steps run in the thread pool"


async def test_context_carries_run_and_stable_idempotency_key(engine: Engine) -> None:
    wf = Workflow("ctx", state=S, config=WorkflowConfiguration(max_retries=2))
    calls: list[tuple[int, str]] = []

    @wf.step
    async def flaky(state: S, ctx: ExecutionContext) -> S:
        calls.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return {"keys": [ctx.idempotency_key], "seen": [ctx.run_id, ctx.step, ctx.workflow]}

    result = await engine.run(wf, {})
    assert result.ok
    assert [a for a, _ in calls] == [1, 2, 3]
    assert len({k for _, k in calls}) == 1, "every attempt has the same idempotency key"
    assert result.state["seen"] == [result.run_id, "flaky", "ctx"]
    assert result.state["keys"] == [f"{result.run_id}:flaky"]


async def test_retries_exhausted_fail_the_run_with_the_error(engine: Engine) -> None:
    wf = Workflow("fails", state=S)

    @wf.step(retries=1)
    def broken(state: S) -> S:
        raise ValueError("bad data in row 7")

    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert result.error == "step 'broken' failed: bad data in row 7"
    events = await engine.store.read_events(result.run_id)
    failures = [e for e in events if e.type == "step_failed"]
    assert [(e.attempt, e.data["retry"]) for e in failures] == [(1, True), (2, False)]


async def test_async_step_timeout_cancels_it(engine: Engine) -> None:
    wf = Workflow("slow", state=S)
    cancelled = asyncio.Event()

    @wf.step(timeout=0.05)
    async def hangs(state: S) -> S:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert "timed out after 0.05s" in (result.error or "")
    assert cancelled.is_set()


async def test_sync_step_timeout_abandons_the_thread_and_ignores_its_result(engine: Engine) -> None:
    wf = Workflow("slow_sync", state=S)
    release = threading.Event()

    @wf.step(timeout=0.05)
    def blocks(state: S) -> S:
        release.wait(5)
        return {"n": 99}

    result = await engine.run(wf, {"n": 1})
    release.set()
    assert result.status is WorkflowStatus.FAILED
    assert result.state["n"] == 1


async def test_step_writing_unknown_key_fails_clearly(engine: Engine) -> None:
    wf = Workflow("typo", state=S)

    @wf.step
    def writes_typo(state: S) -> dict[str, int]:
        return {"m": 1}

    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert "wrote 'm', which the state schema S lacks" in (result.error or "")


async def test_step_returning_non_dict_fails_without_retry(engine: Engine) -> None:
    wf = Workflow("bad_return", state=S, config=WorkflowConfiguration(max_retries=3))
    calls = 0

    @wf.step
    def returns_list(state: S) -> object:
        nonlocal calls
        calls += 1
        return [1, 2]

    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert "returned list; a step returns a dict of state updates or None" in (result.error or "")
    assert calls == 1


async def test_workflow_timeout_fails_the_run() -> None:
    wf = Workflow("deadline", state=S, config=WorkflowConfiguration(timeout=0.1))
    started = asyncio.Event()

    @wf.step
    async def forever(state: S) -> S:
        started.set()
        await asyncio.Event().wait()
        return {}

    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        run_id = await engine.start(wf, {})
        await started.wait()
        clock.advance(0.1)
        result = await engine.wait(run_id)
    assert result.status is WorkflowStatus.FAILED
    assert "workflow timed out after 0.1s" in (result.error or "")


async def test_max_parallel_steps_bounds_concurrent_handlers(engine: Engine) -> None:
    wf = Workflow("bounded", state=S, config=WorkflowConfiguration(max_parallel_steps=2))
    probe = Peak()

    wf.map("fan", items=lambda s: list(range(8)), branch=probe.busy)
    result = await engine.run(wf, {})
    assert result.ok
    assert probe.peak == 2
