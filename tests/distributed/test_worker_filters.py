"""A worker claims only runs of the workflows (name and definition version) and queues it
knows, at most ``concurrency`` at once; the same worker runs on SQLite (one machine), where
the poll finds the work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cadenza import Engine, Workflow, WorkflowStatus
from cadenza.runtime.worker import Worker
from cadenza.store.postgres import PostgresStore
from cadenza.store.sqlite import SQLiteStore

from .helpers import until

S = WorkflowStatus
inside = 0
peak = 0


async def _step(state: dict) -> dict:
    global inside, peak
    inside += 1
    peak = max(peak, inside)
    await asyncio.sleep(0.01)
    inside -= 1
    return {"n": 1}


known = Workflow("known")
known.task(_step, name="work")
stranger = Workflow("stranger")
stranger.task(_step, name="work")
changed = Workflow("known")  # the same name, another definition (version)
changed.task(_step, name="work")
changed.task(_step, name="more")


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


async def test_a_worker_claims_only_what_it_knows(dsn: str) -> None:
    global peak
    peak = 0
    async with Engine(PostgresStore(dsn)) as client:
        mine = [await client.submit(known, {}, queue="fast") for _ in range(12)]
        other_queue = await client.submit(known, {}, queue="slow")
        other_flow = await client.submit(stranger, {}, queue="fast")
        other_version = await client.submit(changed, {}, queue="fast")
        worker = Worker(
            Engine(PostgresStore(dsn)),
            workflows=[known],
            queues=["fast"],
            concurrency=3,
            poll_interval=0.05,
        )
        async with running(worker):

            async def all_done() -> bool:
                runs = [await client.store.get_run(r) for r in mine]
                return all(r.status is S.COMPLETED for r in runs)

            await until(all_done, "the known runs to finish")
            await asyncio.sleep(0.3)  # a few more polls: nothing else may be taken
        for run_id in (other_queue, other_flow, other_version):
            record = await client.store.get_run(run_id)
            assert (record.status, record.owner, record.epoch) == (S.INITIALIZING, None, 0)
        assert 1 < peak <= 3


async def test_a_worker_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    async with Engine(SQLiteStore(db)) as client:
        run_ids = [await client.submit(known, {}) for _ in range(5)]
        worker = Worker(Engine(SQLiteStore(db)), workflows=[known], poll_interval=0.05)
        async with running(worker):

            async def all_done() -> bool:
                runs = [await client.store.get_run(r) for r in run_ids]
                return all(r.status is S.COMPLETED for r in runs)

            await until(all_done, "the runs to finish")
        for run_id in run_ids:
            record = await client.store.get_run(run_id)
            assert (record.owner, record.wake_at, record.epoch) == (None, None, 1)
