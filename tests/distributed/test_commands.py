"""Commands to runs executing in another process: cancel, signal, pause and unpause are
recorded in the store, the worker holding the run is told (NOTIFY) and applies them between
steps; if that worker is frozen, the sender takes the run over once its lease expires and
applies the command itself."""

from __future__ import annotations

import signal

from cadenza import Engine, WorkflowStatus
from cadenza.core.events import EventType
from cadenza.store.postgres import PostgresStore

from .conftest import Workers
from .helpers import effects, open_gate, until
from .test_takeover import _async, _finished, flow

S = WorkflowStatus


async def test_cancel_stops_a_run_in_another_worker(dsn: str, workers: Workers) -> None:
    workflow, target = flow("forever")
    holder = workers.start("--concurrency", "2", workflow="forever", lease=30)
    async with Engine(PostgresStore(dsn)) as engine:
        run_id = await engine.submit(workflow, {}, target=target)
        await until(lambda: _async(effects(dsn, "stuck")), "the worker to start the step")
        result = await engine.cancel(run_id, "no longer needed", actor="ops")
        assert result.status is S.CANCELLED
        record = await engine.store.get_run(run_id)
        assert (record.status, record.owner, record.wake_at) == (S.CANCELLED, None, None)
        events = await engine.store.read_events(run_id)
        final = events[-1]
        assert final.type is EventType.STATUS and final.data["to"] == "CANCELLED"
        assert final.data["reason"] == "no longer needed"
        assert (await engine.store.pending_commands()) == []
    assert holder.poll() is None  # the worker lives on
    assert effects(dsn, "last") == []


async def test_a_signal_reaches_a_run_in_another_worker(dsn: str, workers: Workers) -> None:
    workflow, target = flow("signalled")
    workers.start("--concurrency", "2", workflow="signalled", lease=30)
    async with Engine(PostgresStore(dsn)) as engine:
        run_id = await engine.submit(workflow, {}, target=target)
        await until(lambda: _async(effects(dsn, "gated")), "the worker to start the step")
        await engine.signal(run_id, "proceed", {"go": 1}, actor="ann")
        logged = [e for e in await engine.store.read_events(run_id) if e.type is EventType.SIGNAL]
        assert [(e.data["name"], e.data["payload"], e.data["actor"]) for e in logged] == [
            ("proceed", {"go": 1}, "ann")
        ]
        open_gate(dsn, "signalled")
        done = await until(lambda: _finished(engine.store, run_id), "the run to finish")
        assert done.status is S.COMPLETED
        assert (await engine.result(run_id)).state["payload"] == {"go": 1}


async def test_pause_and_unpause_a_run_in_another_worker(dsn: str, workers: Workers) -> None:
    workflow, target = flow("steady")
    workers.start("--concurrency", "2", workflow="steady", lease=30)
    async with Engine(PostgresStore(dsn)) as engine:
        run_id = await engine.submit(workflow, {}, target=target)
        await until(lambda: _async(effects(dsn, "slow")), "the worker to start the slow step")
        await engine.pause(run_id, "looking into it")
        assert (await engine.store.get_run(run_id)).status is S.PAUSED
        open_gate(dsn, "steady")  # the step in flight finishes and is recorded...

        async def slow_done() -> bool:
            events = await engine.store.read_events(run_id)
            return any(e.type is EventType.STEP_COMPLETED and e.path == "slow" for e in events)

        await until(slow_done, "the step in flight to be recorded")
        assert effects(dsn, "last") == []  # ...and the next one waits
        assert (await engine.store.get_run(run_id)).status is S.PAUSED
        await engine.unpause(run_id)
        done = await until(lambda: _finished(engine.store, run_id), "the run to finish")
        assert done.status is S.COMPLETED


async def test_a_command_to_a_frozen_worker_is_applied_by_the_sender(
    dsn: str, workers: Workers
) -> None:
    workflow, target = flow("forever")
    frozen = workers.start("--concurrency", "1", workflow="forever", lease=1.0)
    async with Engine(PostgresStore(dsn), lease_seconds=1.0) as engine:
        run_id = await engine.submit(workflow, {}, target=target)
        await until(lambda: _async(effects(dsn, "stuck")), "the worker to start the step")
        frozen.send_signal(signal.SIGSTOP)
        try:
            result = await engine.cancel(run_id, "its worker hangs")
        finally:
            frozen.send_signal(signal.SIGCONT)
        assert result.status is S.CANCELLED
        record = await engine.store.get_run(run_id)
        assert record.epoch == 2  # taken over by the sender to apply it
        (command,) = [c for c in [await engine.store.get_command(1)] if c is not None]
        assert command.kind == "cancel" and command.outcome == "cancelled"
