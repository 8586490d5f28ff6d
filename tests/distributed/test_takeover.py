"""Workers that die, freeze or stop: their runs are taken over and continue from the last
committed step, exactly once per step's completion; a worker frozen past its lease cannot
commit anything after another took its run over (fencing); SIGTERM hands runs back at once;
timers fire on whichever worker is alive."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from cadenza import Engine, WorkflowStatus
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.observe.audit import verify
from cadenza.runtime.loader import load_target
from cadenza.store.postgres import PostgresStore

from .conftest import FLOWS, Workers
from .helpers import effects, open_gate, until

S = WorkflowStatus


def flow(name: str) -> tuple[Any, str]:
    return load_target(f"{FLOWS}:{name}")


async def submit(dsn: str, name: str, count: int = 1) -> list[RunId]:
    workflow, target = flow(name)
    async with Engine(PostgresStore(dsn)) as engine:
        return [await engine.submit(workflow, {}, target=target) for _ in range(count)]


async def completions(store: PostgresStore, run_id: RunId) -> dict[str, list[Any]]:
    """Each step path's completion events."""
    found: dict[str, list[Any]] = {}
    for event in await store.read_events(run_id):
        if event.type is EventType.STEP_COMPLETED:
            found.setdefault(event.path, []).append(event)
    return found


async def test_a_killed_workers_run_is_taken_over_after_its_lease(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    (run_id,) = await submit(dsn, "fenced")
    first = workers.start("--concurrency", "1", workflow="fenced", lease=1.0)
    await until(lambda: _async(effects(dsn, "slow")), "the first worker to start the slow step")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    held = await store.get_run(run_id)
    assert held.owner is not None and held.status is S.RUNNING  # still its, until it expires
    second = workers.start("--concurrency", "1", workflow="fenced", lease=1.0)
    await until(lambda: _async(len(effects(dsn, "slow")) == 2), "the second worker's attempt")
    open_gate(dsn, "fenced")
    done = await until(lambda: _finished(store, run_id), "the run to finish")
    assert done.status is S.COMPLETED
    assert done.epoch == 2
    by = await completions(store, run_id)
    assert sorted(by) == ["first", "last", "slow"]
    assert all(len(events) == 1 for events in by.values())
    assert [pid for _, step, _, pid in effects(dsn) if step == "first"] == [first.pid]
    assert [pid for _, step, _, pid in effects(dsn, "slow")] == [first.pid, second.pid]
    assert by["slow"][0].data["update"]["by"] == {"slow": second.pid}
    assert verify(await store.read_events(run_id)) is None


async def test_a_frozen_worker_cannot_commit_after_its_run_was_taken_over(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    """SIGSTOP a worker mid-step past its lease, let another take the run over and finish it,
    SIGCONT the first: nothing it does afterwards is stored, and it says why."""
    (run_id,) = await submit(dsn, "fenced")
    frozen = workers.start("--concurrency", "1", workflow="fenced", lease=1.0)
    await until(lambda: _async(effects(dsn, "slow")), "the worker to start the slow step")
    frozen.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: _expired(store, run_id), "its lease to expire")
        taker = workers.start("--concurrency", "1", workflow="fenced", lease=1.0)
        await until(lambda: _async(len(effects(dsn, "slow")) == 2), "the takeover's attempt")
        open_gate(dsn, "fenced")  # both attempts may finish now; only one may be recorded
        done = await until(lambda: _finished(store, run_id), "the run to finish")
        log_at_takeover = await store.read_events(run_id)
    finally:
        frozen.send_signal(signal.SIGCONT)
    await until(
        lambda: _async("lease_lost" in workers.output(frozen)), "the frozen worker to notice"
    )
    assert frozen.poll() is None  # it abandoned the run, not its work
    assert done.status is S.COMPLETED
    log = await store.read_events(run_id)
    assert log == log_at_takeover  # nothing was committed after the takeover
    by = await completions(store, run_id)
    assert all(len(events) == 1 for events in by.values()), by
    assert by["slow"][0].data["update"]["by"] == {"slow": taker.pid}
    assert by["last"][0].data["update"]["by"] == {"last": taker.pid}
    assert [pid for *_, pid in effects(dsn, "last")] == [taker.pid]
    assert verify(log) is None
    assert (await store.get_run(run_id)).epoch == 2


async def test_sigterm_finishes_the_step_in_flight_and_hands_the_run_back(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    (run_id,) = await submit(dsn, "steady")
    leaving = workers.start("--concurrency", "1", "--grace", "60", workflow="steady", lease=60)
    await until(lambda: _async(effects(dsn, "slow")), "the slow step to start")
    leaving.send_signal(signal.SIGTERM)
    open_gate(dsn, "steady")
    assert await asyncio.to_thread(leaving.wait, 60) == 0, workers.output(leaving)
    handed = await store.get_run(run_id)
    # released at once (a 60 s lease would otherwise keep it), due, the slow step recorded
    assert (handed.owner, handed.lease_until, handed.status) == (None, None, S.RUNNING)
    assert handed.wake_at is not None and handed.wake_at <= time.time()
    assert sorted(await completions(store, run_id)) == ["first", "slow"]
    assert effects(dsn, "last") == []
    staying = workers.start("--concurrency", "1", workflow="steady", lease=60)
    done = await until(lambda: _finished(store, run_id), "the run to finish elsewhere")
    assert done.status is S.COMPLETED
    assert [pid for *_, pid in effects(dsn, "slow")] == [leaving.pid]  # not run again
    assert [pid for *_, pid in effects(dsn, "last")] == [staying.pid]


async def test_timers_and_approval_timeouts_fire_on_whichever_worker_is_alive(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    (run_id,) = await submit(dsn, "timers")
    sleeper = workers.start("--concurrency", "1", "--interval", "0.1", workflow="timers", lease=1)

    async def timer_set() -> Any:
        events = await store.read_events(run_id)
        return next((e for e in events if e.type is EventType.TIMER_SET), None)

    timer = await until(timer_set, "the timer to be set")
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait(timeout=30)
    waker = workers.start("--concurrency", "1", "--interval", "0.1", workflow="timers", lease=1)
    done = await until(lambda: _finished(store, run_id), "the run to finish")
    assert done.status is S.COMPLETED, done.error
    events = await store.read_events(run_id)
    nap = next(e for e in events if e.type is EventType.STEP_COMPLETED and e.path == "nap")
    assert nap.data["fire_at"] == timer.data["fire_at"]  # the original timer, not a new one
    assert nap.ts >= timer.data["fire_at"]
    decision = next(e for e in events if e.type is EventType.APPROVAL_DECISION)
    assert decision.data["actor"] == "system:timeout" and decision.data["approve"] is True
    waiting = [
        e for e in events if e.type is EventType.STATUS and e.data["to"] == "WAITING_APPROVAL"
    ]
    assert waiting  # the run stopped executing while it waited: nobody held it
    assert [pid for *_, pid in effects(dsn, "last")] == [waker.pid]
    assert [pid for *_, pid in effects(dsn, "first")] == [sleeper.pid]


async def _async(value: Any) -> Any:
    return value


async def _finished(store: PostgresStore, run_id: RunId) -> Any:
    record = await store.get_run(run_id)
    return record if record.status.terminal else None


async def _expired(store: PostgresStore, run_id: RunId) -> bool:
    record = await store.get_run(run_id)
    return (record.lease_until or 0) < time.time()
