"""How idle workers find work: a ``NOTIFY`` from the store wakes them at once (here the poll is
an hour, so nothing else could); with hints turned off, the poll alone finds it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cadenza import Engine, Workflow, WorkflowStatus
from cadenza.runtime.worker import Worker
from cadenza.store.postgres import PostgresStore

from .helpers import until

wf = Workflow("wake")


@wf.step
async def only(state: dict) -> dict:
    return {"done": True}


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await worker.shutdown(5)


async def _done(store: PostgresStore, run_id: str) -> bool:
    return (await store.get_run(run_id)).status is WorkflowStatus.COMPLETED  # type: ignore[arg-type]


async def test_a_notify_wakes_an_idle_worker(dsn: str) -> None:
    engine = Engine(PostgresStore(dsn))
    worker = Worker(engine, workflows=[wf], poll_interval=3600)
    async with running(worker), Engine(PostgresStore(dsn)) as client:
        await until(lambda: _value(engine.parts.inbox.hints_live), "the worker to listen")
        await asyncio.sleep(0.2)  # let it finish its first look for work and go idle
        for _ in range(3):
            run_id = await client.submit(wf, {})
            await until(lambda rid=run_id: _done(client.store, rid), "the run to be executed")  # type: ignore[misc]


async def test_with_hints_off_the_poll_alone_finds_the_work(dsn: str) -> None:
    engine = Engine(PostgresStore(dsn))
    worker = Worker(engine, workflows=[wf], poll_interval=0.1, listen=False)
    async with running(worker), Engine(PostgresStore(dsn)) as client:
        run_ids = [await client.submit(wf, {}) for _ in range(5)]
        for run_id in run_ids:
            await until(lambda rid=run_id: _done(client.store, rid), "the run to be executed")  # type: ignore[misc]
        assert not engine.parts.inbox.listening and not engine.parts.inbox.hints_live


async def _value(value: object) -> object:
    return value
