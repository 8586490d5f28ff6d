"""The LangGraph-compatible facade next to LangGraph itself, on the same graphs.

    python bench/langgraph_facade.py [--quick] [--repeat K] [--graph chain,...]
                                     [--store memory,sqlite] [--json]

Graphs (built from either ``langgraph.graph`` or ``cadenza.langgraph.graph``; sync nodes,
``invoke``; every run on a new thread):

  chain     10 nodes joined by edges                                  10 node executions
  fanout    one node, 8 in parallel, a join of the 8, one last node    10
  mapreduce a plan node, one ``Send`` per item (20), a reduce node     22
  loop      one node with a conditional edge back to itself, 10 turns  10

Stores
  memory    no checkpointer on either side.
  sqlite    a SQLite checkpointer on each side, both on a file in WAL mode with
            ``synchronous=NORMAL``: LangGraph's ``SqliteSaver`` for LangGraph and
            ``cadenza.langgraph.checkpoint.sqlite.SqliteSaver`` for the facade (its default
            ``fast=True``), each in its default durability (``"async"``: checkpoints written
            behind the run, all stored when ``invoke`` returns) and with
            ``durability="sync"`` (each step's checkpoint stored before the next step); also
            the facade on LangGraph's ``SqliteSaver``, which isolates the executor.

Each cell runs in a fresh child process, K times; the fastest wall time is kept. The ratio
is LangGraph's time per node execution, in the same durability mode, over the row's (higher:
the facade is faster). The result of every run is checked, so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Annotated, Any, TypedDict

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
MARK = "@@LGBENCH@@ "
GRAPHS = ("chain", "fanout", "mapreduce", "loop")
STORES = ("memory", "sqlite")
NODES = {"chain": 10, "fanout": 10, "mapreduce": 22, "loop": 10}
# (engine, store, variant): variant "" is the default
CELLS = [
    ("langgraph", "memory", ""),
    ("cadenza", "memory", ""),
    ("langgraph", "sqlite", ""),
    ("langgraph", "sqlite", "durability=sync"),
    ("cadenza", "sqlite", ""),
    ("cadenza", "sqlite", "durability=sync"),
    ("cadenza", "sqlite", "LangGraph SqliteSaver"),
]


class S(TypedDict):
    n: int
    out: Annotated[list[int], operator.add]
    items: list[int]


def _inc(state: S) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def _emit(i: int) -> Any:
    def node(state: S) -> dict[str, Any]:
        return {"out": [i]}

    return node


def build(graph_mod: Any, types_mod: Any, shape: str, saver: Any) -> Any:
    g = graph_mod.StateGraph(S)
    start, end = graph_mod.START, graph_mod.END
    if shape == "chain":
        previous = start
        for i in range(10):
            g.add_node(f"s{i}", _inc)
            g.add_edge(previous, f"s{i}")
            previous = f"s{i}"
        g.add_edge(previous, end)
    elif shape == "fanout":
        g.add_node("first", _inc)
        g.add_node("last", _inc)
        g.add_edge(start, "first")
        names = [f"p{i}" for i in range(8)]
        for i, name in enumerate(names):
            g.add_node(name, _emit(i))
            g.add_edge("first", name)
        g.add_edge(names, "last")
        g.add_edge("last", end)
    elif shape == "mapreduce":
        g.add_node("plan", lambda s: {"items": list(range(20))})
        g.add_node("work", lambda arg: {"out": [arg * 2]})
        g.add_node("reduce", lambda s: {"n": sum(s["out"])})
        g.add_edge(start, "plan")
        g.add_conditional_edges(
            "plan", lambda s: [types_mod.Send("work", i) for i in s["items"]], ["work"]
        )
        g.add_edge("work", "reduce")
        g.add_edge("reduce", end)
    elif shape == "loop":
        g.add_node("turn", _inc)
        g.add_edge(start, "turn")
        g.add_conditional_edges("turn", lambda s: "turn" if s["n"] < 10 else end, ["turn", end])
    else:
        raise ValueError(shape)
    return g.compile(checkpointer=saver)


def check(shape: str, out: dict[str, Any]) -> None:
    expected = {
        "chain": lambda o: o["n"] == 10,
        "fanout": lambda o: o["n"] == 2 and o["out"] == list(range(8)),
        "mapreduce": lambda o: o["n"] == sum(range(0, 40, 2)) and len(o["out"]) == 20,
        "loop": lambda o: o["n"] == 10,
    }[shape]
    if not expected(out):
        raise RuntimeError(f"{shape}: wrong result {out!r}")


def _sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _saver(engine: str, store: str, variant: str, tmpdir: str) -> tuple[Any, Any]:
    """(saver, closer) for a cell."""
    if store == "memory":
        return None, None
    path = os.path.join(tmpdir, "bench.db")
    if engine == "cadenza" and variant in ("", "durability=sync"):
        from cadenza.langgraph.checkpoint.sqlite import SqliteSaver as CadenzaSqliteSaver

        cm = CadenzaSqliteSaver.from_conn_string(path)
        return cm.__enter__(), lambda: cm.__exit__(None, None, None)
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = _sqlite(path)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn.close


def child(engine: str, shape: str, store: str, variant: str, runs: int, repeat: int) -> None:
    if engine == "cadenza":
        if SRC not in sys.path:
            sys.path.insert(0, SRC)
        import cadenza.langgraph.graph as graph_mod
        import cadenza.langgraph.types as types_mod
    else:
        import langgraph.graph as graph_mod
        import langgraph.types as types_mod
    kwargs = {"durability": "sync"} if variant == "durability=sync" else {}
    best = float("inf")
    for attempt in range(repeat):
        with tempfile.TemporaryDirectory() as tmpdir:
            saver, close = _saver(engine, store, variant, tmpdir)
            try:
                app = build(graph_mod, types_mod, shape, saver)
                warm = {"configurable": {"thread_id": f"warm-{attempt}"}}
                check(shape, app.invoke({"n": 0, "out": [], "items": []}, warm, **kwargs))
                start = time.perf_counter()
                for i in range(runs):
                    config = {"configurable": {"thread_id": f"t{attempt}-{i}"}}
                    out = app.invoke({"n": 0, "out": [], "items": []}, config, **kwargs)
                wall = time.perf_counter() - start
                check(shape, out)
            finally:
                if close is not None:
                    close()
        best = min(best, wall)
    per_node = best / (runs * NODES[shape]) * 1e6
    print(MARK + json.dumps({"per_node_us": per_node, "runs": runs}), flush=True)


def run_cell(
    engine: str, shape: str, store: str, variant: str, args: argparse.Namespace
) -> dict[str, Any]:
    runs = (20 if store == "sqlite" else 100) if args.quick else (100 if store == "sqlite" else 500)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        engine,
        shape,
        store,
        variant,
        str(runs),
        "--repeat",
        str(args.repeat),
    ]
    row = {"graph": shape, "store": store, "engine": engine, "variant": variant}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return {**row, **json.loads(line[len(MARK) :])}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**row, "error": f"child exited {proc.returncode}: {' | '.join(tail)}"}


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _mode(variant: str) -> str:
    """The durability a row runs with: its ratio is to LangGraph's row in the same mode."""
    return "sync" if variant == "durability=sync" else "default"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--child", nargs=5, metavar=("ENGINE", "GRAPH", "STORE", "VARIANT", "RUNS"))
    p.add_argument("--graph", default=",".join(GRAPHS))
    p.add_argument("--store", default=",".join(STORES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.child:
        engine, shape, store, variant, runs = args.child
        child(engine, shape, store, variant, int(runs), args.repeat)
        return 0
    if SRC not in sys.path:
        sys.path.insert(0, SRC)
    shapes = [g for g in args.graph.split(",") if g]
    stores = [s for s in args.store.split(",") if s]
    notes = []
    cells = [c for c in CELLS if c[1] in stores]
    if "sqlite" in stores and not _available("cadenza.langgraph.checkpoint.sqlite"):
        cells = [c for c in cells if not (c[0] == "cadenza" and c[1] == "sqlite" and c[2] == "")]
        notes.append(
            "cadenza.langgraph.checkpoint.sqlite is not importable: the facade's SQLite row "
            "uses LangGraph's SqliteSaver only"
        )
    rows = [run_cell(e, g, s, v, args) for g in shapes for (e, s, v) in cells]
    if args.json:
        print(json.dumps({"rows": rows, "notes": notes}, indent=2))
        return 0
    reference = {
        (r["graph"], r["store"], _mode(r["variant"])): r["per_node_us"]
        for r in rows
        if r["engine"] == "langgraph" and "per_node_us" in r
    }
    head = ("graph", "store", "engine", "variant", "us/node", "LangGraph/this")
    print(f"{head[0]:<10} {head[1]:<7} {head[2]:<10} {head[3]:<22} {head[4]:>9} {head[5]:>15}")
    for r in rows:
        if "error" in r:
            where = f"{r['graph']:<10} {r['store']:<7} {r['engine']:<10} {r['variant']:<22}"
            print(f"{where} ERROR {r['error']}")
            continue
        base = reference.get((r["graph"], r["store"], _mode(r["variant"])))
        ratio = f"{base / r['per_node_us']:.2f}x" if base else "-"
        print(
            f"{r['graph']:<10} {r['store']:<7} {r['engine']:<10} {r['variant'] or 'default':<22} "
            f"{r['per_node_us']:>9.1f} {ratio:>15}"
        )
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
