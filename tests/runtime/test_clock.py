"""The clock an engine keeps, and the step kinds it is given: a :class:`ManualClock` moves
only when a test advances it, and everything a run records or waits for follows it; the
executors come from the ``kinds`` the engine is given (Cadenza's own by default)."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest

from cadenza import Engine, MemoryStore, StepKind, Workflow
from cadenza.core.clock import SYSTEM_CLOCK, ManualClock
from cadenza.core.events import EventType
from cadenza.graph.ir import Step
from cadenza.runtime.kinds import StepKinds
from cadenza.runtime.run import RunExecution
from cadenza.runtime.scope import Scope
from cadenza.steps import KINDS


class S(TypedDict, total=False):
    log: list[str]


async def test_a_sleep_ends_when_the_clock_is_advanced_past_it() -> None:
    clock = ManualClock(start=1000.0)
    nap = asyncio.ensure_future(clock.sleep(5))
    await clock.until_waiting()
    clock.advance(4.5)
    await asyncio.sleep(0)
    assert not nap.done() and clock.waiting == 1
    clock.advance(0.5)
    await nap
    assert (clock.now(), clock.monotonic(), clock.waiting) == (1005.0, 5.0, 0)


async def test_a_timeout_on_the_clock_expires_when_it_is_advanced() -> None:
    clock = ManualClock()
    entered = asyncio.Event()

    async def blocked() -> None:
        async with clock.timeout(2):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(blocked())
    await entered.wait()
    clock.advance(2)
    with pytest.raises(TimeoutError):
        await task


async def test_a_block_that_ends_in_time_leaves_nothing_waiting() -> None:
    clock = ManualClock()
    async with clock.timeout(2):
        assert clock.waiting == 1
    assert clock.waiting == 0
    clock.advance(3)  # nothing left to expire


async def test_a_cancelled_sleep_no_longer_waits() -> None:
    clock = ManualClock()
    nap = asyncio.ensure_future(clock.sleep(1))
    await clock.until_waiting()
    nap.cancel()
    with pytest.raises(asyncio.CancelledError):
        await nap
    assert clock.waiting == 0


def test_the_clock_does_not_go_back() -> None:
    with pytest.raises(ValueError, match="does not go back"):
        ManualClock().advance(-1)


def test_the_system_clock_is_the_standard_library() -> None:
    import time

    assert SYSTEM_CLOCK.now is time.time and SYSTEM_CLOCK.sleep is asyncio.sleep


async def test_a_run_records_the_time_of_its_engine_clock() -> None:
    wf = Workflow("stamped", state=S)
    wf.task(lambda s: {"log": ["one"]}, name="one")
    clock = ManualClock(start=1_000_000.0)
    async with Engine(MemoryStore(), clock=clock) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
        record = await engine.store.get_run(result.run_id)
    assert result.ok
    assert {e.ts for e in events} == {1_000_000.0}
    assert record.created_at == 1_000_000.0
    assert record.deadline == 1_000_000.0 + 3600  # the default timeout


async def test_an_engine_executes_the_kinds_it_is_given() -> None:
    seen: list[str] = []

    async def tracing(run: RunExecution, step: Step, scope: Scope, path: str) -> Any:
        seen.append(path)
        return await KINDS.executors[step.kind](run, step, scope, path)

    kinds = StepKinds({**KINDS.executors, StepKind.TASK: tracing})
    wf = Workflow("traced", state=S)
    wf.task(lambda s: {"log": ["a"]}, name="a")
    wf.task(lambda s: {"log": ["b"]}, name="b")
    async with Engine(MemoryStore(), kinds=kinds) as engine:
        assert engine.kinds is kinds
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.ok and seen == ["a", "b"]
    assert [e.path for e in events if e.type is EventType.STEP_COMPLETED] == ["a", "b"]


async def test_by_default_an_engine_executes_cadenzas_own_kinds() -> None:
    from cadenza.runtime.engine import Engine as RuntimeEngine

    assert RuntimeEngine is Engine
    async with Engine(MemoryStore()) as engine:
        assert engine.kinds is KINDS and StepKind.TASK in engine.kinds
