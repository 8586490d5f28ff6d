"""LangGraph (1.2.x) on the three scenarios, through ``ainvoke`` and through ``invoke``.

Graph shapes
  seq   ``chain``: 1,000 nodes joined by edges; ``loop``: one node with a conditional edge
        back to itself until n == 1,000 (recursion_limit raised above the step count)
  map   a conditional edge from START returning one ``Send("work", {"item": i})`` per item;
        ``work`` returns ``{"out": [2 * i]}`` into an ``operator.add`` channel
  many_runs  ``runs`` runs of a 3-node chain, one thread_id each: concurrent ``ainvoke``s
        (gathered), or with ``+invoke`` one ``invoke`` after the other

APIs (each cell is measured both ways; neither is assumed to be the faster)
  default      ``async def`` nodes and ``ainvoke``, which runs them on the loop
  ``+invoke``  plain ``def`` nodes and the sync ``invoke`` (a step with several tasks, the
               map's, runs them on LangGraph's thread pool), with the sync savers

Checkpointers
  memory       no checkpointer (default) and ``+inmem`` (``InMemorySaver``)
  sqlite*      ``AsyncSqliteSaver`` on an aiosqlite connection (``ainvoke``) or ``SqliteSaver``
               on a sqlite3 connection (``+invoke``) to a file in the temp dir; each sets WAL
               itself, we set ``synchronous`` to the store's level. Default ``durability``
               ("async": a step's checkpoint is written while the next step runs; the run
               still waits for every write) and ``+dur=sync`` (each checkpoint committed
               before the next step starts, the like of a per-step durable engine).
"""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
from typing import Annotated, Any, TypedDict

from common import Size, expect, map_expected, start_clock, stop_clock, synchronous
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


def inc_sync(state: S) -> dict[str, Any]:  # the same nodes for the sync ``invoke``
    return {"n": state["n"] + 1}


async def work(arg: Item) -> dict[str, Any]:
    return {"out": [arg["item"] * 2]}


def work_sync(arg: Item) -> dict[str, Any]:
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


def _map(node: Any = work) -> StateGraph:
    g = StateGraph(S)
    g.add_node("work", node)
    g.add_conditional_edges(START, lambda s: [Send("work", {"item": i}) for i in s["items"]])
    g.add_edge("work", END)
    return g


def _builder(scenario: str, variant: str, size: Size, sync_api: bool) -> StateGraph:
    if scenario == "seq":
        shape = _chain if variant.startswith("chain") else _loop
        return shape(size.seq_steps, inc_sync if sync_api else inc)
    if scenario == "map":
        return _map(work_sync if sync_api else work)
    return _chain(size.run_steps, inc_sync if sync_api else inc)


def _inputs(scenario: str, size: Size) -> list[tuple[dict[str, Any], str]]:
    """(input, thread_id) of each run the scenario makes."""
    if scenario == "seq":
        return [({"n": 0}, "seq")]
    if scenario == "map":
        return [({"items": list(range(size.map_items)), "out": []}, "map")]
    return [({"n": 0}, f"r{i}") for i in range(size.runs)]


def _check(scenario: str, size: Size, finals: list[dict[str, Any]]) -> None:
    if scenario == "seq":
        expect(finals[0]["n"] == size.seq_steps, f"seq reached n={finals[0]['n']}")
    elif scenario == "map":
        out = finals[0]["out"]
        expect(sorted(out) == map_expected(size.map_items), f"map joined {len(out)} outputs")
    else:
        expect(len(finals) == size.runs, f"many_runs: {len(finals)} results")
        expect(all(f["n"] == size.run_steps for f in finals), "many_runs: bad n")


async def measure(scenario: str, store: str, variant: str, size: Size, tmpdir: str) -> float:
    options = set(variant.split("+"))
    sync_api = "invoke" in options
    builder = _builder(scenario, variant, size, sync_api)
    kwargs: dict[str, Any] = {"durability": "sync"} if "dur=sync" in options else {}
    limit = 2 * size.seq_steps + 100
    runs = [
        (state, {"configurable": {"thread_id": tid}, "recursion_limit": limit})
        for state, tid in _inputs(scenario, size)
    ]

    path = os.path.join(tmpdir, "langgraph.db")
    conn: Any = None  # sqlite3 (invoke) or aiosqlite (ainvoke) connection
    saver: Any = None
    if store == "memory":
        if "inmem" in options:
            from langgraph.checkpoint.memory import InMemorySaver

            saver = InMemorySaver()
    elif sync_api:
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()  # creates tables, sets WAL; outside the timed region
        conn.execute(f"PRAGMA synchronous={synchronous(store)}")
    else:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(path)
        saver = AsyncSqliteSaver(conn)
        await saver.setup()  # creates tables, sets WAL; outside the timed region
        await conn.execute(f"PRAGMA synchronous={synchronous(store)}")
    graph = builder.compile(checkpointer=saver)

    try:
        if sync_api:
            t0 = start_clock()
            finals = [graph.invoke(state, cfg, **kwargs) for state, cfg in runs]
            wall = stop_clock(t0)
        elif len(runs) == 1:
            state, cfg = runs[0]
            t0 = start_clock()
            finals = [await graph.ainvoke(state, cfg, **kwargs)]
            wall = stop_clock(t0)
        else:
            t0 = start_clock()
            finals = await asyncio.gather(
                *(graph.ainvoke(state, cfg, **kwargs) for state, cfg in runs)
            )
            wall = stop_clock(t0)
        _check(scenario, size, finals)
    finally:
        if sync_api and conn is not None:
            conn.close()
        elif conn is not None:
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
