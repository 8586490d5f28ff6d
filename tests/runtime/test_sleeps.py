"""Runs that have nothing to do but sleep (a long timer, a retry backoff) are suspended: no
task, no lease, their wake-up time in the store; the engine wakes them on time, and
``Engine.run``/``wait`` follow them through their sleeps. Sleeps shorter than
``short_sleep`` stay in memory, and a run sleeping in one branch while another works goes on
working.

The engines keep a :class:`ManualClock` a minute behind the real time: the tests move it on
past each sleep instead of waiting, and every time the engine records is already past for the
store (which keeps the real time), so that it finds the runs due when the engine wakes them."""

from __future__ import annotations

import asyncio
import itertools
import operator
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from cadenza import Engine, RetryPolicy, Workflow, WorkflowStatus
from cadenza.core.clock import ManualClock
from cadenza.core.events import EventType
from cadenza.store.memory import MemoryStore
from cadenza.store.sqlite import SQLiteStore

S = WorkflowStatus
NAP = 0.6  # seconds: a "long" sleep here, with short_sleep=0.2


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    n: int


def tagged(tag: str) -> Any:
    async def handler(state: State) -> State:
        return {"log": [tag]}

    handler.__name__ = handler.__qualname__ = tag
    return handler


def napper(seconds: float = NAP) -> Workflow:
    wf = Workflow("napper", state=State)
    wf.task(tagged("before"))
    wf.wait("nap", seconds=seconds)
    wf.task(tagged("after"))
    return wf


def behind() -> ManualClock:
    """A clock a minute behind the real time (see the module's text)."""
    return ManualClock(start=time.time() - 60)


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Wait until ``check()`` holds (only a hang fails on ``timeout``)."""
    limit = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < limit, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)
    return value


async def asleep(engine: Engine, count: int = 1) -> None:
    """Wait until ``count`` runs are suspended."""

    async def sleeping() -> bool:
        return engine.sleeping == count

    await until(sleeping, f"{count} run(s) to be suspended")


async def test_a_sleeping_run_holds_no_task_and_no_lease_and_wakes_on_time(
    tmp_path: Path,
) -> None:
    clock = behind()
    async with Engine(SQLiteStore(tmp_path / "runs.db"), short_sleep=0.2, clock=clock) as engine:
        idle_tasks = len(asyncio.all_tasks())
        run_ids = [await engine.start(napper(), {}) for _ in range(20)]
        await asleep(engine, len(run_ids))
        assert engine.in_flight == 0
        # one engine-wide task wakes them all (and one renews leases): none per run
        assert len(asyncio.all_tasks()) <= idle_tasks + 2
        for run_id in run_ids:
            record = await engine.store.get_run(run_id)
            events = await engine.store.read_events(run_id)
            timer = next(e for e in events if e.type is EventType.TIMER_SET)
            assert (record.status, record.owner, record.lease_until) == (S.RUNNING, None, None)
            assert record.wake_at == timer.data["fire_at"]
        clock.advance(NAP)
        results = [await engine.wait(run_id) for run_id in run_ids]
    assert all(r.ok and r.state["log"] == ["before", "after"] for r in results)
    async with SQLiteStore(tmp_path / "runs.db") as store:
        for run_id in run_ids:
            events = await store.read_events(run_id)
            fire_at = next(e for e in events if e.type is EventType.TIMER_SET).data["fire_at"]
            woke = next(e for e in events if e.type is EventType.STEP_COMPLETED and e.path == "nap")
            assert woke.ts == fire_at, "woken on time, not before"


async def test_run_returns_the_final_result_through_a_long_sleep() -> None:
    clock = behind()
    async with Engine(MemoryStore(), short_sleep=0.2, clock=clock) as engine:
        run_id = await engine.start(napper(), {})
        waiting = asyncio.ensure_future(engine.wait(run_id))
        await asleep(engine)
        assert not waiting.done()
        clock.advance(NAP)
        result = await waiting
        events = await engine.store.read_events(run_id)
    assert result.ok and result.state["log"] == ["before", "after"]
    timer = next(e for e in events if e.type is EventType.TIMER_SET)
    assert events[-1].ts - timer.ts == pytest.approx(NAP)


async def test_a_short_sleep_stays_in_memory() -> None:
    clock = ManualClock()
    async with Engine(MemoryStore(), short_sleep=5, clock=clock) as engine:
        run_id = await engine.start(napper(0.3), {})
        await clock.until_waiting(2)  # its timer, slept in memory (and its deadline)
        record = await engine.store.get_run(run_id)
        assert engine.in_flight == 1 and engine.sleeping == 0
        assert record.owner == engine.owner
        clock.advance(0.3)
        assert (await engine.wait(run_id)).ok


async def test_a_branch_goes_on_working_while_another_sleeps() -> None:
    sleeper = Workflow("sleeper", state=State)
    sleeper.wait("nap", seconds=NAP)
    worker = Workflow("counter", state=State)
    worker.loop("again", body=_count, until="n >= 3", max_iterations=5)
    worker.task(tagged("counted"))
    wf = Workflow("side_by_side", state=State)
    wf.parallel("fan", [sleeper, worker])
    wf.task(tagged("end"))
    clock = behind()
    async with Engine(MemoryStore(), short_sleep=0.2, clock=clock) as engine:
        run_id = await engine.start(wf, {})
        await asleep(engine)  # once the other branch is done: only the timer is left
        clock.advance(NAP)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(result.run_id)
    assert result.ok, result.error
    assert result.state["log"] == ["counted", "end"]
    fire_at = next(e for e in events if e.type is EventType.TIMER_SET).data["fire_at"]
    worked = [e for e in events if e.type is EventType.LOOP_ITERATION]
    counted = next(e for e in events if e.path.endswith("counted"))
    assert len(worked) == 3
    assert all(e.ts < fire_at for e in [*worked, counted]), "the loop ran while the timer slept"


async def _count(state: State) -> State:
    await asyncio.sleep(0)  # the branch yields, as real work would
    return {"n": state.get("n", 0) + 1}


async def test_a_retry_backoff_suspends_and_resumes_the_count() -> None:
    clock = behind()
    calls: list[float] = []

    async def flaky(state: State) -> State:
        calls.append(clock.now())
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return {"log": ["flaky"]}

    wf = Workflow("flaky", state=State)
    wf.task(flaky, retry=RetryPolicy(max_attempts=5, initial_delay=0.4, backoff=1, jitter=0))
    async with Engine(MemoryStore(), short_sleep=0.2, clock=clock) as engine:
        run_id = await engine.start(wf, {})
        await asleep(engine)
        assert engine.in_flight == 0
        assert (await engine.store.get_run(run_id)).owner is None
        clock.advance(0.4)

        async def asleep_again() -> bool:
            return len(calls) == 2 and engine.sleeping == 1

        await until(asleep_again, "the second backoff to suspend the run")
        clock.advance(0.4)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(run_id)
    assert result.ok and len(calls) == 3
    assert [e.attempt for e in events if e.type is EventType.STEP_FAILED] == [1, 2]
    assert all(b - a >= 0.4 for a, b in itertools.pairwise(calls))


async def test_a_sleep_past_the_workflow_timeout_fails_at_the_timeout() -> None:
    wf = Workflow("too_slow", state=State, config={"timeout": 0.5})
    wf.wait("nap", seconds=3600)
    clock = behind()
    async with Engine(MemoryStore(), short_sleep=0.2, clock=clock) as engine:
        started = clock.now()
        run_id = await engine.start(wf, {})
        await asleep(engine)
        clock.advance(0.5)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(run_id)
    assert result.status is S.FAILED and "timed out" in (result.error or "")
    assert events[-1].ts == pytest.approx(started + 0.5), "failed at its timeout, not later"


async def test_a_sleeping_run_can_be_cancelled_and_is_not_woken() -> None:
    clock = behind()
    async with Engine(MemoryStore(), short_sleep=0.2, clock=clock) as engine:
        run_id = await engine.start(napper(1.0), {})
        await asleep(engine)
        cancelled = await engine.cancel(run_id, "no longer needed")
        assert cancelled.status is S.CANCELLED
        clock.advance(1.2)  # its alarm rings: it is not woken, and forgotten
        assert (await engine.wait(run_id)).status is S.CANCELLED
        record = await engine.store.get_run(run_id)
        assert (record.status, record.wake_at, engine.sleeping) == (S.CANCELLED, None, 0)


async def test_another_engine_wakes_a_run_whose_engine_closed_while_it_slept(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    wf = napper()
    async with Engine(SQLiteStore(db), short_sleep=0.2, clock=behind()) as first:
        run_id = await first.start(wf, {})
        await asleep(first)
    async with Engine(SQLiteStore(db), short_sleep=0.2) as second:  # the real time: it is due
        second.register(wf)
        report = await second.resume_all()
    assert [r.run_id for r in report.results] == [run_id]
    assert report.results[0].ok
