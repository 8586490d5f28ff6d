"""Shared definitions: scenario sizes, store names, SQLite settings and the result check.

Every adapter module (``floor``, ``scenarios_cadenza``, ``peers_langgraph``, ``peers_dbos``)
exposes one function (the variants each measures are listed here, in :func:`variants`, so
the parent process can plan without importing any engine):

``async measure(scenario, store, variant, size, tmpdir) -> float``
    builds everything the run needs (workflow/graph definitions, store, engine), times
    **only** the run itself between :func:`start_clock` and :func:`stop_clock`, verifies
    that the work was done (raises ``BenchError`` otherwise), tears down and returns the
    timed wall seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass

SCENARIOS = ("seq", "map", "many_runs")
STORES = ("memory", "sqlite", "sqlite-fast")
ENGINES = ("floor", "cadenza", "langgraph", "dbos")
MODULES = {
    "floor": "floor",
    "cadenza": "scenarios_cadenza",
    "langgraph": "peers_langgraph",
    "dbos": "peers_dbos",
}
# module spec that must be importable for an engine's cell to run (store-dependent for LangGraph)
REQUIRES = {
    "cadenza": "cadenza.runtime.engine",
    "langgraph": "langgraph.graph",
    "dbos": "dbos",
}


# Set in the child that run.py starts under strace to count fsyncs: the clock then also marks
# the timed region in the trace with an ``fsync`` of a descriptor that is never open (it fails
# with EBADF), which no engine makes.
FSYNC_MARKS_ENV = "CADENZA_BENCH_FSYNC_MARKS"
FSYNC_MARK_FD = 2**31 - 1
_MARKS = os.environ.get(FSYNC_MARKS_ENV) == "1"


def _mark() -> None:
    with contextlib.suppress(OSError):
        os.fsync(FSYNC_MARK_FD)


def start_clock() -> float:
    """Start of the timed region (and, when fsyncs are counted, its mark in the trace)."""
    if _MARKS:
        _mark()
    return time.perf_counter()


def stop_clock(t0: float) -> float:
    """End of the timed region: the wall seconds since :func:`start_clock` returned ``t0``."""
    wall = time.perf_counter() - t0
    if _MARKS:
        _mark()
    return wall


class BenchError(RuntimeError):
    """The engine under test did not do the work it was asked to do."""


@dataclass(frozen=True, slots=True)
class Size:
    seq_steps: int = 1000  # seq: steps in one run
    map_items: int = 1000  # map: branches in one run
    runs: int = 500  # many_runs: concurrent runs ...
    run_steps: int = 3  # ... of this many sequential steps

    def steps(self, scenario: str) -> int:
        """The number of steps that per_step_us divides the wall time by."""
        if scenario == "seq":
            return self.seq_steps
        if scenario == "map":
            return self.map_items
        if scenario == "many_runs":
            return self.runs * self.run_steps
        raise ValueError(scenario)


FULL = Size()
QUICK = Size(seq_steps=100, map_items=100, runs=50, run_steps=3)


def synchronous(store: str) -> str:
    """The SQLite ``synchronous`` setting a store name stands for."""
    return {"sqlite": "FULL", "sqlite-fast": "NORMAL"}[store]


def sqlite_pragmas(conn: sqlite3.Connection, store: str) -> None:
    """WAL journal and the store's synchronous level, on a DB-API connection."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous(store)}")


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise BenchError(what)


def map_expected(n: int) -> list[int]:
    """The joined output every map scenario must produce: item i -> 2*i, in item order."""
    return [2 * i for i in range(n)]


def variants(engine: str, scenario: str, store: str) -> list[str]:
    """The variants measured for a cell, "" being the default one; [] means "not applicable"."""
    if engine == "floor":
        return ["", "tasks"] if store == "memory" and scenario != "seq" else [""]
    if engine == "cadenza":
        return [""]
    if engine == "langgraph":
        # shape, then the checkpointer / durability option, then the API: each ``ainvoke`` row
        # is followed by its ``+invoke`` twin (sync nodes, sync ``invoke``, sync saver)
        shapes = {"seq": ["chain", "loop"], "map": ["send"], "many_runs": [""]}[scenario]
        option = "inmem" if store == "memory" else "dur=sync"
        return [
            "+".join(part for part in (shape, extra, api) if part)
            for shape in shapes
            for extra in ("", option)
            for api in ("", "invoke")
        ]
    if engine == "dbos":
        return [] if store == "memory" else (["", "stock"] if store == "sqlite" else [""])
    raise ValueError(engine)


NOT_APPLICABLE = {("dbos", "memory"): "DBOS has no in-memory system database"}
