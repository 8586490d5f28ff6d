"""Cadenza: the three scenarios on MemoryStore / SQLiteStore(fast=False|True).

seq        one workflow of ``seq_steps`` tasks, no edges (declaration order)
map        one workflow with a single ``map`` over ``items``; each branch returns
           ``{"out": [2 * item]}`` into an ``operator.add`` channel (the join)
many_runs  ``runs`` concurrent ``engine.run`` calls of a ``run_steps``-task workflow

Step functions are ``async def`` like every other engine's, so nobody pays for a thread hop.
"""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
from typing import Annotated, Any, TypedDict

from common import Size, expect, map_expected, start_clock, stop_clock

from cadenza import Engine, ExecutionContext, MemoryStore, Workflow


class S(TypedDict, total=False):
    n: int
    items: list[int]
    out: Annotated[list[int], operator.add]


async def inc(state: S) -> dict[str, Any]:
    return {"n": state["n"] + 1}


async def work(state: S, ctx: ExecutionContext) -> dict[str, Any]:
    return {"out": [ctx.item * 2]}


def _chain(name: str, steps: int) -> Workflow:
    wf = Workflow(name, state=S)
    for i in range(steps):
        wf.task(inc, name=f"s{i}")
    return wf


def _store(store: str, tmpdir: str) -> Any:
    if store == "memory":
        return MemoryStore()
    from cadenza import SQLiteStore  # lazy in cadenza too

    return SQLiteStore(os.path.join(tmpdir, "cadenza.db"), fast=(store == "sqlite-fast"))


def _ok(result: Any) -> None:
    status = getattr(result.status, "value", result.status)
    expect(
        str(status).upper() == "COMPLETED",
        f"cadenza run {result.run_id} ended {result.status}: {result.error}",
    )


async def measure(scenario: str, store: str, variant: str, size: Size, tmpdir: str) -> float:
    if scenario == "seq":
        wf = _chain("seq", size.seq_steps)
    elif scenario == "map":
        wf = Workflow("map", state=S)
        wf.map("fan", items="items", branch=work)
    else:
        wf = _chain("three", size.run_steps)
    wf.compile()  # validation and hashing happen once per definition, like LangGraph's compile()

    async with Engine(_store(store, tmpdir)) as engine:
        if scenario == "seq":
            t0 = start_clock()
            result = await engine.run(wf, {"n": 0})
            wall = stop_clock(t0)
            _ok(result)
            expect(result.state["n"] == size.seq_steps, f"seq reached n={result.state['n']}")
        elif scenario == "map":
            items = list(range(size.map_items))
            t0 = start_clock()
            result = await engine.run(wf, {"items": items, "out": []})
            wall = stop_clock(t0)
            _ok(result)
            out = result.state.get("out", [])
            expect(
                sorted(out) == map_expected(size.map_items),
                f"map joined {len(out)} outputs, expected {size.map_items}",
            )
        else:
            t0 = start_clock()
            results = await asyncio.gather(*(engine.run(wf, {"n": 0}) for _ in range(size.runs)))
            wall = stop_clock(t0)
            for r in results:
                _ok(r)
            expect(all(r.state["n"] == size.run_steps for r in results), "many_runs: bad n")
            expect(len({r.run_id for r in results}) == size.runs, "many_runs: run ids collide")

    if store != "memory":  # the steps really reached the file
        runs = size.runs if scenario == "many_runs" else 1
        with sqlite3.connect(os.path.join(tmpdir, "cadenza.db")) as db:
            (done,) = db.execute(
                "SELECT count(*) FROM events WHERE type = 'step_completed'"
            ).fetchone()
            (ok,) = db.execute("SELECT count(*) FROM runs WHERE status = 'COMPLETED'").fetchone()
        expect(done >= size.steps(scenario), f"only {done} step_completed events on disk")
        expect(ok == runs, f"{ok} completed runs on disk, expected {runs}")
    return wall
