"""DBOS Transact (3.4.x) on the three scenarios, SQLite system database in the temp dir.

seq        one ``async`` workflow awaiting ``seq_steps`` ``async`` steps in turn
map        one ``async`` workflow that starts one ``async`` step per item with
           ``asyncio.create_task`` (in item order) and ``asyncio.gather``s them: the
           pattern DBOS documents for running steps in parallel inside a workflow (child
           workflows/queues are its tool for parallel *sequences*, which map doesn't need)
many_runs  ``runs`` concurrent calls of a 3-step ``async`` workflow (each its own
           workflow id), gathered

Stores: DBOS has no in-memory system database, so it has no ``memory`` rows. For
``sqlite`` / ``sqlite-fast`` every connection DBOS opens gets ``journal_mode=WAL`` and the
store's ``synchronous`` level (a SQLAlchemy connect hook), the same settings as the other
engines; variant ``stock`` (sqlite only) leaves DBOS's own defaults (rollback journal,
synchronous=FULL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from typing import Any

import sqlalchemy as sa
from common import Size, expect, map_expected, start_clock, stop_clock, synchronous
from dbos import DBOS
from sqlalchemy import event


@DBOS.step()
async def inc(n: int) -> int:
    return n + 1


@DBOS.step()
async def work(item: int) -> int:
    return item * 2


@DBOS.workflow()
async def chain_wf(steps: int) -> int:
    n = 0
    for _ in range(steps):
        n = await inc(n)
    return n


@DBOS.workflow()
async def map_wf(items: list[int]) -> list[int]:
    tasks = [asyncio.create_task(work(i)) for i in items]
    return list(await asyncio.gather(*tasks))


async def measure(scenario: str, store: str, variant: str, size: Size, tmpdir: str) -> float:
    path = os.path.join(tmpdir, "dbos.sqlite")
    sync_level = synchronous(store)

    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute(f"PRAGMA synchronous={sync_level}")

    hooked = variant != "stock"
    if hooked:
        event.listen(sa.engine.Engine, "connect", pragmas)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "cadenza-bench",
            "system_database_url": f"sqlite:///{path}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()  # inside the running loop: async workflows run on it
    try:
        if scenario == "seq":
            t0 = start_clock()
            n = await chain_wf(size.seq_steps)
            wall = stop_clock(t0)
            expect(n == size.seq_steps, f"seq reached n={n}")
        elif scenario == "map":
            t0 = start_clock()
            out = await map_wf(list(range(size.map_items)))
            wall = stop_clock(t0)
            expect(sorted(out) == map_expected(size.map_items), f"map joined {len(out)}")
        else:
            t0 = start_clock()
            ns = await asyncio.gather(*(chain_wf(size.run_steps) for _ in range(size.runs)))
            wall = stop_clock(t0)
            expect(ns == [size.run_steps] * size.runs, "many_runs: bad n")
    finally:
        DBOS.destroy()
        if hooked:
            event.remove(sa.engine.Engine, "connect", pragmas)

    with sqlite3.connect(path) as db:  # the steps really were recorded
        (steps,) = db.execute("SELECT count(*) FROM operation_outputs").fetchone()
        (wfs,) = db.execute(
            "SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS'"
        ).fetchone()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    expect(steps >= size.steps(scenario), f"only {steps} step rows on disk")
    expect(wfs == (size.runs if scenario == "many_runs" else 1), f"{wfs} successful workflows")
    expect((mode == "wal") == hooked, f"journal_mode is {mode}")
    return wall
