"""Long loops: does an iteration late in a loop cost what an early one does?

    python bench/loops.py [--iterations N] [--store memory,sqlite,sqlite-fast]
                          [--until expr|fn] [--json] [--no-fsyncs]

One run of ``wf.loop("lp", body=bump, until="n >= N", max_iterations=N)`` per store, where
``bump`` returns ``{"n": n + 1}`` and notes the time it was called (``--until fn``: the exit
condition is the Python predicate ``lambda s: s["n"] >= N`` instead of the expression).
Reported per store:

- ``first_us`` / ``last_us``: the mean time between two consecutive body calls (one whole
  iteration: the body's commit, the exit condition, the next body call) over the first and
  the last tenth of the iterations, each the best of ``--repeat`` runs (default 3), and
  their ratio (``last_us / first_us``);
- ``snap_early`` / ``snap_late``: the bytes of the first snapshot stored after a tenth of the
  run's events and of the last one before the run finished (snapshots are taken every 200
  events; the final one of a finished run holds only its state, and is not counted);
- ``fsyncs/iter`` (SQLite stores): ``fsync`` + ``fdatasync`` system calls in the timed
  region over N, counted (not timed) in one more run of the cell in a child process under
  ``strace``, with the marks and the counter that ``bench/run.py`` uses (``common.start_clock``
  / ``stop_clock``, ``run.fsyncs_between_marks``).

Every run checks its work: it ends COMPLETED with ``n == N`` and N ``loop_iteration`` events
in the log. See bench/README.md, "Long loops".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, TypedDict

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
if HERE not in sys.path:
    sys.path.insert(0, HERE)
try:
    import cadenza  # noqa: F401
except ImportError:
    sys.path.insert(0, SRC)

import pydantic_core  # noqa: E402
from common import FSYNC_MARKS_ENV, STORES, expect, start_clock, stop_clock  # noqa: E402
from run import STRACE_ARGS, find_strace, fsyncs_between_marks  # noqa: E402

from cadenza import Engine, MemoryStore, Workflow  # noqa: E402
from cadenza.store.base import Snapshot  # noqa: E402

DEFAULT_ITERATIONS = 20_000


class S(TypedDict):
    n: int


def workflow(iterations: int, stamps: list[float], until: str = "expr") -> Workflow:
    async def bump(state: S) -> S:
        stamps.append(time.perf_counter())
        return {"n": state["n"] + 1}

    def done(state: S) -> bool:
        return state["n"] >= iterations

    wf = Workflow("long_loop", state=S)
    condition = f"n >= {iterations}" if until == "expr" else done
    wf.loop("lp", body=bump, until=condition, max_iterations=iterations)
    return wf


def _store(name: str, tmpdir: str) -> Any:
    if name == "memory":
        return MemoryStore()
    from cadenza import SQLiteStore

    return SQLiteStore(os.path.join(tmpdir, "loops.db"), fast=(name == "sqlite-fast"))


class SnapshotWatch:
    """Keeps the snapshots the engine hands the store that the report needs (the first after
    a tenth of the events, the latest non-final one), sized only after the timed region: a
    JSON dump of each in the timed region would add to what is measured."""

    def __init__(self, store: Any, early_seq: int) -> None:
        self.early_seq = early_seq
        self.early: Snapshot | None = None
        self.late: Snapshot | None = None
        inner = store.append

        async def append(run_id: Any, events: Any, **kw: Any) -> None:
            snap = kw.get("snapshot")
            if snap is not None and "done" in snap.state:  # not the final one
                if self.early is None and snap.seq >= self.early_seq:
                    self.early = snap
                self.late = snap
            await inner(run_id, events, **kw)

        store.append = append

    @staticmethod
    def size(snap: Snapshot | None) -> int | None:
        if snap is None:
            return None
        return len(pydantic_core.to_json([snap.state, snap.buffers]))


async def measure(store_name: str, iterations: int, until: str = "expr") -> dict[str, Any]:
    stamps: list[float] = []
    wf = workflow(iterations, stamps, until)
    with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmpdir:
        store = _store(store_name, tmpdir)
        # two events per iteration: a tenth of the run's events is 2 * iterations / 10
        watch = SnapshotWatch(store, early_seq=iterations // 5)
        async with Engine(store) as engine:
            t0 = start_clock()
            result = await engine.run(wf, {"n": 0})
            wall = stop_clock(t0)
            events = await engine.store.read_events(result.run_id)
    expect(result.ok, f"run ended {result.status}: {result.error}")
    expect(result.state["n"] == iterations, f"n == {result.state['n']}, not {iterations}")
    turns = sum(e.type == "loop_iteration" for e in events)
    expect(turns == iterations, f"{turns} loop_iteration events, not {iterations}")
    expect(len(stamps) == iterations, f"the body ran {len(stamps)} times, not {iterations}")
    tenth = max(iterations // 10, 2)
    first = (stamps[tenth] - stamps[0]) / tenth
    last = (stamps[-1] - stamps[-1 - tenth]) / tenth
    return {
        "store": store_name,
        "until": until,
        "iterations": iterations,
        "wall_s": round(wall, 3),
        "events": len(events),
        "first_us": round(first * 1e6, 1),
        "last_us": round(last * 1e6, 1),
        "last_over_first": round(last / first, 2),
        "snap_early_bytes": SnapshotWatch.size(watch.early),
        "snap_early_seq": watch.early.seq if watch.early else None,
        "snap_late_bytes": SnapshotWatch.size(watch.late),
        "snap_late_seq": watch.late.seq if watch.late else None,
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from K runs of a cell: each time the best of the K (the least disturbed by the
    rest of a shared machine); the sizes and counts are the same in every run."""
    row = dict(runs[-1])
    for key in ("wall_s", "first_us", "last_us"):
        row[key] = min(r[key] for r in runs)
    row["last_over_first"] = round(row["last_us"] / row["first_us"], 2)
    row["repeat"] = len(runs)
    return row


def count_fsyncs(strace: str, store: str, iterations: int, until: str) -> int:
    """fsyncs in the timed region of one more (untimed) run of the cell, under strace."""
    fd, log = tempfile.mkstemp(prefix="bench-loops-strace-", suffix=".log")
    os.close(fd)
    try:
        cmd = [
            strace,
            *STRACE_ARGS,
            "-o",
            log,
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            store,
            "--iterations",
            str(iterations),
            "--until",
            until,
        ]
        env = os.environ | {FSYNC_MARKS_ENV: "1"}
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=3600)
        with open(log, encoding="utf-8", errors="replace") as f:
            return fsyncs_between_marks(f.read())
    finally:
        os.unlink(log)


def _table(rows: list[dict[str, Any]]) -> str:
    heads = [
        "store",
        "until",
        "iterations",
        "wall_s",
        "first_us",
        "last_us",
        "last/first",
        "snap_early",
        "snap_late",
        "fsyncs/iter",
    ]
    lines = [heads]
    for r in rows:
        fsyncs = f"{r['fsyncs_per_iteration']:.3f}" if "fsyncs_per_iteration" in r else "-"
        lines.append(
            [
                r["store"],
                r["until"],
                str(r["iterations"]),
                f"{r['wall_s']:.2f}",
                f"{r['first_us']:.1f}",
                f"{r['last_us']:.1f}",
                f"{r['last_over_first']:.2f}x",
                f"{r['snap_early_bytes']:,} B @{r['snap_early_seq']}",
                f"{r['snap_late_bytes']:,} B @{r['snap_late_seq']}",
                fsyncs,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(heads))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    parser.add_argument("--store", default="memory,sqlite")
    parser.add_argument(
        "--until",
        choices=("expr", "fn"),
        default="expr",
        help="the exit condition: the expression 'n >= N' (default) or a Python predicate",
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of K runs (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--no-fsyncs", action="store_true", help="don't count fsyncs")
    parser.add_argument("--child", metavar="STORE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the run that strace counts: no report, only the marks in the trace
        asyncio.run(measure(args.child, args.iterations, args.until))
        return 0
    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        parser.error(f"unknown store {', '.join(unknown)}; choose from {', '.join(STORES)}")
    strace = None
    if not args.no_fsyncs and any(s != "memory" for s in stores):
        strace, why = find_strace()
        if strace is None:
            print(f"note: fsyncs not counted: {why}", file=sys.stderr)
    rows = []
    for store in stores:
        print(f"... {store}: {args.iterations} iterations", file=sys.stderr)
        row = best(
            [asyncio.run(measure(store, args.iterations, args.until)) for _ in range(args.repeat)]
        )
        if strace is not None and store != "memory":
            row["fsyncs"] = count_fsyncs(strace, store, args.iterations, args.until)
            row["fsyncs_per_iteration"] = row["fsyncs"] / args.iterations
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
