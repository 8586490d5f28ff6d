"""Floors: what the scenarios cost with no engine at all.

memory       an ``await`` loop calling the same trivial async step function once per step
             (variant ``tasks`` for map/many_runs: one asyncio task per branch / per run,
             gathered, i.e. the bare cost of the concurrency the scenario asks for).
sqlite*      one INSERT + COMMIT per step on a WAL database file with the store's
             ``synchronous`` level (FULL for ``sqlite``, NORMAL for ``sqlite-fast``), i.e.
             the cost of making each step durable with one commit, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3

from common import Size, expect, sqlite_pragmas, start_clock, stop_clock


async def inc(state: dict) -> dict:
    return {"n": state["n"] + 1}


async def measure(scenario: str, store: str, variant: str, size: Size, tmpdir: str) -> float:
    n = size.steps(scenario)
    if store == "memory":
        if variant == "tasks":
            return await _tasks(scenario, size)
        state = {"n": 0}
        t0 = start_clock()
        for _ in range(n):
            state = await inc(state)
        wall = stop_clock(t0)
        expect(state["n"] == n, f"floor await loop reached {state['n']} != {n}")
        return wall

    path = os.path.join(tmpdir, "floor.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        sqlite_pragmas(conn, store)
        conn.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
        state = {"n": 0}
        t0 = start_clock()
        for _ in range(n):
            state = await inc(state)
            conn.execute("BEGIN")
            conn.execute("INSERT INTO steps (state) VALUES (?)", (json.dumps(state),))
            conn.execute("COMMIT")
        wall = stop_clock(t0)
        (rows,) = conn.execute("SELECT count(*) FROM steps").fetchone()
        expect(rows == n and state["n"] == n, f"floor sqlite wrote {rows} rows != {n}")
        return wall
    finally:
        conn.close()


async def _tasks(scenario: str, size: Size) -> float:
    if scenario == "map":

        async def branch(i: int) -> int:
            return (await inc({"n": i}))["n"]

        t0 = start_clock()
        out = await asyncio.gather(*(asyncio.create_task(branch(i)) for i in range(size.map_items)))
        wall = stop_clock(t0)
        expect(out == [i + 1 for i in range(size.map_items)], "floor map tasks: wrong output")
        return wall

    async def run3() -> int:
        state = {"n": 0}
        for _ in range(size.run_steps):
            state = await inc(state)
        return state["n"]

    t0 = start_clock()
    out = await asyncio.gather(*(asyncio.create_task(run3()) for _ in range(size.runs)))
    wall = stop_clock(t0)
    expect(out == [size.run_steps] * size.runs, "floor many_runs tasks: wrong output")
    return wall
