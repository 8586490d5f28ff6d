"""LangGraph (1.2.x) on the three scenarios.

Graph shapes
  seq   ``chain``: 1,000 nodes joined by edges; ``loop``: one node with a conditional edge
        back to itself until n == 1,000 (recursion_limit raised above the step count)
  map   a conditional edge from START returning one ``Send("work", {"item": i})`` per item;
        ``work`` returns ``{"out": [2 * i]}`` into an ``operator.add`` channel
  many_runs  ``runs`` concurrent ``ainvoke`` of a 3-node chain, one thread_id each

Checkpointers
  memory       no checkpointer (default variant) and ``+inmem`` (``InMemorySaver``)
  sqlite*      ``AsyncSqliteSaver`` on an aiosqlite connection to a file in the temp dir
               (the sync ``SqliteSaver`` refuses the async API that ``ainvoke`` needs); it
               sets WAL itself, we set ``synchronous`` to the store's level. Default
               ``durability`` ("async": a step's checkpoint is written while the next step
               runs; the run still waits for every write) and ``+dur=sync`` (each checkpoint
               committed before the next step starts, the like of a per-step durable engine).
               seq also has ``+SqliteSaver``: the sync API (``invoke``, sync nodes) on the
               sync ``SqliteSaver``, default durability.

Node functions are ``async def`` so ``ainvoke`` runs them on the loop (sync nodes would
be sent to a thread pool).
"""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
import time
from typing import Annotated, Any, TypedDict

from common import Size, expect, map_expected, synchronous
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class S(TypedDict, total=False):
    n: int
    items: list[int]
    out: Annotated[list[int], operator.add]


class Item(TypedDict):
    item: int


async def inc(state: S) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def inc_sync(state: S) -> dict[str, Any]:  # for the sync ``invoke`` + ``SqliteSaver`` variant
    return {"n": state["n"] + 1}


async def work(arg: Item) -> dict[str, Any]:
    return {"out": [arg["item"] * 2]}


def _chain(steps: int, node: Any = inc) -> StateGraph:
    g = StateGraph(S)
    prev = START
    for i in range(steps):
        g.add_node(f"s{i}", node)
        g.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    g.add_edge(prev, END)
    return g


def _loop(steps: int, node: Any = inc) -> StateGraph:
    g = StateGraph(S)
    g.add_node("inc", node)
    g.add_edge(START, "inc")
    g.add_conditional_edges("inc", lambda s: "inc" if s["n"] < steps else END, ["inc", END])
    return g


def _map() -> StateGraph:
    g = StateGraph(S)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", {"item": i}) for i in s["items"]])
    g.add_edge("work", END)
    return g


async def measure(scenario: str, store: str, variant: str, size: Size, tmpdir: str) -> float:
    sync_saver = "SqliteSaver" in variant
    if scenario == "seq":
        shape = _chain if variant.startswith("chain") else _loop
        builder = shape(size.seq_steps, inc_sync if sync_saver else inc)
    elif scenario == "map":
        builder = _map()
    else:
        builder = _chain(size.run_steps)
    kwargs: dict[str, Any] = {"durability": "sync"} if "dur=sync" in variant else {}
    limit = {"recursion_limit": 2 * size.seq_steps + 100}

    conn = None
    path = os.path.join(tmpdir, "langgraph.db")
    if sync_saver:
        return _measure_sync_saver(builder, store, size, path)
    if store == "memory":
        if "inmem" in variant:
            from langgraph.checkpoint.memory import InMemorySaver

            graph = builder.compile(checkpointer=InMemorySaver())
        else:
            graph = builder.compile()
    else:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(path)
        saver = AsyncSqliteSaver(conn)
        await saver.setup()  # creates tables, sets WAL; outside the timed region
        await conn.execute(f"PRAGMA synchronous={synchronous(store)}")
        graph = builder.compile(checkpointer=saver)

    def cfg(tid: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": tid}, **limit}

    try:
        if scenario == "seq":
            t0 = time.perf_counter()
            final = await graph.ainvoke({"n": 0}, cfg("seq"), **kwargs)
            wall = time.perf_counter() - t0
            expect(final["n"] == size.seq_steps, f"seq reached n={final['n']}")
        elif scenario == "map":
            t0 = time.perf_counter()
            final = await graph.ainvoke(
                {"items": list(range(size.map_items)), "out": []}, cfg("map"), **kwargs
            )
            wall = time.perf_counter() - t0
            expect(
                sorted(final["out"]) == map_expected(size.map_items),
                f"map joined {len(final['out'])} outputs",
            )
        else:
            t0 = time.perf_counter()
            finals = await asyncio.gather(
                *(graph.ainvoke({"n": 0}, cfg(f"r{i}"), **kwargs) for i in range(size.runs))
            )
            wall = time.perf_counter() - t0
            expect(all(f["n"] == size.run_steps for f in finals), "many_runs: bad n")
    finally:
        if conn is not None:
            await conn.close()

    if conn is not None:  # the checkpoints really reached the file
        with sqlite3.connect(path) as db:
            (cps,) = db.execute("SELECT count(*) FROM checkpoints").fetchone()
            (writes,) = db.execute("SELECT count(*) FROM writes").fetchone()
        want = {"seq": size.seq_steps, "map": 2, "many_runs": size.runs * size.run_steps}
        expect(cps >= want[scenario], f"only {cps} checkpoints on disk")
        if scenario == "map":
            expect(writes >= size.map_items, f"only {writes} branch writes on disk")
    return wall


def _measure_sync_saver(builder: StateGraph, store: str, size: Size, path: str) -> float:
    """seq through the sync API: ``invoke`` with sync nodes and the sync ``SqliteSaver``."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()  # sets WAL
        conn.execute(f"PRAGMA synchronous={synchronous(store)}")
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "seq"}, "recursion_limit": 2 * size.seq_steps + 100}
        t0 = time.perf_counter()
        final = graph.invoke({"n": 0}, config)
        wall = time.perf_counter() - t0
        expect(final["n"] == size.seq_steps, f"seq reached n={final['n']}")
        (cps,) = conn.execute("SELECT count(*) FROM checkpoints").fetchone()
        expect(cps >= size.seq_steps, f"only {cps} checkpoints on disk")
    finally:
        conn.close()
    return wall
