"""Per-step overhead of Cadenza, next to bare floors and (with --peers) LangGraph and DBOS.

    python bench/run.py [--peers] [--scenario seq,map,many_runs] [--store memory,sqlite,...]
                        [--engine cadenza,floor,...] [--repeat K] [--quick] [--json]
                        [--no-fsyncs]

Each (engine, scenario, store, variant) cell is measured in a fresh child process
(``run.py --child ...``), so imports and peak RSS belong to one engine only; the child runs
the cell K times (fresh store / temp dir each time), keeps the fastest wall time and
reports its own ``ru_maxrss``. On the SQLite stores one more child, not timed, runs the cell
once under ``strace`` to count the fsync and fdatasync calls made in the timed region.
See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import (  # noqa: E402
    ENGINES,
    FSYNC_MARK_FD,
    FSYNC_MARKS_ENV,
    FULL,
    MODULES,
    NOT_APPLICABLE,
    QUICK,
    REQUIRES,
    SCENARIOS,
    STORES,
    variants,
)

MARK = "@@BENCH@@ "
PEERS_PIP = "pip install langgraph==1.2.22 langgraph-checkpoint-sqlite dbos==3.4.0"
# --seccomp-bpf: only the traced calls stop the child, the rest of it runs at full speed
STRACE_ARGS = ("-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync,fdatasync")
_SYNC_CALL = re.compile(rf"^(?:\d+ +)?(fsync|fdatasync)\(({FSYNC_MARK_FD}\b)?")
FASTEST_NOTE = (
    "fastest rows: per scenario and store, each engine's fastest variant; for LangGraph "
    "that is the faster of its ainvoke and invoke rows, so vs_cadenza there uses the faster API"
)


# ----------------------------------------------------------------------------- child side


def _ensure_cadenza_path() -> None:
    if importlib.util.find_spec("cadenza") is None and os.path.isdir(SRC):
        sys.path.insert(0, SRC)


def child(engine: str, scenario: str, store: str, variant: str, repeat: int, quick: bool) -> int:
    # imported here, not at the top: the parent must stay small (see _has_module)
    import asyncio
    import gc
    import resource
    import shutil
    import tempfile

    size = QUICK if quick else FULL
    record: dict[str, Any] = {
        "scenario": scenario,
        "engine": engine,
        "store": store,
        "variant": variant,
        "n": size.steps(scenario),
    }
    if engine == "cadenza":
        _ensure_cadenza_path()
    try:
        module = importlib.import_module(MODULES[engine])
    except ImportError as exc:
        record["skipped"] = f"{engine} not importable: {exc}"
        print(MARK + json.dumps(record), flush=True)
        return 0
    best = float("inf")
    try:
        for _ in range(repeat):
            tmpdir = tempfile.mkdtemp(prefix=f"bench-{engine}-")
            try:
                gc.collect()
                wall = asyncio.run(module.measure(scenario, store, variant, size, tmpdir))
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            best = min(best, wall)
    except Exception as exc:  # a failed verification or a crash: report it, don't hide it
        record["error"] = f"{type(exc).__name__}: {exc}"
        print(MARK + json.dumps(record), flush=True)
        return 1
    record["wall_s"] = best
    record["per_step_us"] = best / record["n"] * 1e6
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(MARK + json.dumps(record), flush=True)
    return 0


# ---------------------------------------------------------------------------- parent side


def _has_module(dotted: str) -> bool:
    """Whether ``dotted`` can be imported, found without importing anything: the parent stays
    small because a child's ``ru_maxrss`` starts from its parent's peak at fork/exec."""
    top, *rest = dotted.split(".")
    if top == "cadenza":
        _ensure_cadenza_path()
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    if not rest:
        return True
    for base in spec.submodule_search_locations or []:
        path = os.path.join(base, *rest)
        if os.path.isdir(path) or os.path.isfile(path + ".py"):
            return True
    return False


def _missing(engine: str, store: str) -> str | None:
    """Why an engine can't run here (not installed), or None."""
    if engine == "floor":
        return None
    if not _has_module(REQUIRES[engine]):
        hint = "engine not present" if engine == "cadenza" else PEERS_PIP
        return f"{engine} skipped: {REQUIRES[engine]} not importable ({hint})"
    if (
        engine == "langgraph"
        and store != "memory"
        and not _has_module("langgraph.checkpoint.sqlite")
    ):
        return "langgraph sqlite skipped: langgraph-checkpoint-sqlite not installed"
    return None


def _child_cmd(cell: tuple[str, str, str, str], repeat: int, quick: bool) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        *cell,
        "--repeat",
        str(repeat),
    ] + (["--quick"] if quick else [])


def _run_child(
    cell: tuple[str, str, str, str],
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    engine, scenario, store, variant = cell
    failed = {"scenario": scenario, "engine": engine, "store": store, "variant": variant}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return failed | {"error": f"timed out after {timeout}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return failed | {"error": f"child exited {proc.returncode}: {' | '.join(tail)}"}


def run_cell(
    engine: str,
    scenario: str,
    store: str,
    variant: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The timed child's record, with the fsync count of an untimed one added (SQLite stores,
    when strace is usable)."""
    cell = (engine, scenario, store, variant)
    record = _run_child(cell, _child_cmd(cell, args.repeat, args.quick), args.timeout)
    if "per_step_us" in record and store != "memory" and args.strace:
        counted = count_fsyncs(cell, args)
        if "error" in counted:
            record["error"] = f"fsync count: {counted['error']}"
        else:
            record["fsyncs"] = counted["fsyncs"]
            record["fsyncs_per_step"] = counted["fsyncs"] / record["n"]
    return record


def fsyncs_between_marks(trace: str) -> int:
    """fsync + fdatasync calls between the two marks of the timed region
    (``fsync(FSYNC_MARK_FD)``) in an ``strace -f -o`` log; a call that another thread's
    interrupts in the log (``<unfinished ...>``) is counted at its start."""
    inside = False
    marks = calls = 0
    for line in trace.splitlines():
        m = _SYNC_CALL.match(line)
        if m is None:
            continue
        if m.group(2):  # a mark
            marks += 1
            inside = not inside
        elif inside:
            calls += 1
    if marks != 2:
        raise ValueError(f"expected the 2 marks of one timed region in the trace, found {marks}")
    return calls


def count_fsyncs(cell: tuple[str, str, str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Run the cell once more, untimed, under strace, and count its syncs in the timed region.

    Not in the timed children: a traced call stops the process twice, so the count would
    slow every sync it counts. The calls come from C (SQLite's own ``fdatasync``), which is
    why the count is taken at the system-call boundary and not by wrapping ``os.fsync``."""
    import tempfile  # here, not at the top: the parent must stay small (see _has_module)

    fd, log = tempfile.mkstemp(prefix="bench-strace-", suffix=".log")
    os.close(fd)
    try:
        cmd = [args.strace, *STRACE_ARGS, "-o", log, *_child_cmd(cell, 1, args.quick)]
        env = os.environ | {FSYNC_MARKS_ENV: "1"}
        record = _run_child(cell, cmd, args.timeout, env)
        if "error" in record or "skipped" in record:
            return {"error": record.get("error") or record["skipped"]}
        with open(log, encoding="utf-8", errors="replace") as f:
            return {"fsyncs": fsyncs_between_marks(f.read())}
    except ValueError as exc:
        return {"error": str(exc)}
    finally:
        os.unlink(log)


def find_strace() -> tuple[str | None, str | None]:
    """The strace binary if it can trace a child here (ptrace may be forbidden), else the
    reason it can't."""
    path = shutil.which("strace")
    if path is None:
        return None, "strace not found (Debian: apt-get install strace)"
    try:
        probe = subprocess.run(
            [path, *STRACE_ARGS, "-o", os.devnull, sys.executable, "-c", "pass"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"strace unusable: {exc}"
    if probe.returncode != 0:
        tail = " | ".join(probe.stderr.strip().splitlines()[-2:])
        return None, f"strace unusable (exit {probe.returncode}): {tail}"
    return path, None


def _csv(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def ratio_base(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {
        (r["scenario"], r["store"]): r["per_step_us"]
        for r in rows
        if r["engine"] == "cadenza" and not r.get("variant") and "per_step_us" in r
    }


def fastest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each engine's fastest row per (scenario, store), in the order the rows came."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["scenario"], r["store"], r["engine"])
        if key not in best or r["per_step_us"] < best[key]["per_step_us"]:
            best[key] = r
    return list(best.values())


def _ratio(x: float) -> str:
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.4f}x"


def _fsyncs(r: dict[str, Any]) -> str:
    return f"{r['fsyncs_per_step']:.3f}" if "fsyncs_per_step" in r else "-"


def _print_grid(head: list[str], table: list[list[str]], right: set[int]) -> None:
    table = [head, *table]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for k, row in enumerate(table):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def print_table(rows: list[dict[str, Any]], notes: list[str]) -> None:
    base = ratio_base(rows)

    def vs(r: dict[str, Any]) -> str:
        b = base.get((r["scenario"], r["store"]))
        return _ratio(r["per_step_us"] / b) if b else "-"

    head = [
        "scenario",
        "engine",
        "variant",
        "store",
        "n",
        "per_step_us",
        "wall_s",
        "vs_cadenza",
        "fsyncs/step",
        "peak_rss_mib",
    ]
    _print_grid(
        head,
        [
            [
                r["scenario"],
                r["engine"],
                r.get("variant") or "-",
                r["store"],
                str(r["n"]),
                f"{r['per_step_us']:.1f}",
                f"{r['wall_s']:.5f}",
                vs(r),
                _fsyncs(r),
                f"{r['peak_rss_mib']:.1f}",
            ]
            for r in rows
        ],
        {4, 5, 6, 7, 8, 9},
    )
    best = fastest_rows(rows)
    if len(best) < len(rows):
        print()
        _print_grid(
            ["scenario", "store", "engine", "fastest", "per_step_us", "vs_cadenza", "fsyncs/step"],
            [
                [
                    r["scenario"],
                    r["store"],
                    r["engine"],
                    r.get("variant") or "-",
                    f"{r['per_step_us']:.1f}",
                    vs(r),
                    _fsyncs(r),
                ]
                for r in best
            ],
            {4, 5, 6},
        )
        notes = [FASTEST_NOTE, *notes]
    for note in notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scenario",
        default=",".join(SCENARIOS),
        help="comma list of seq,map,many_runs (default all)",
    )
    p.add_argument(
        "--store",
        default=",".join(STORES),
        help="comma list of memory,sqlite,sqlite-fast (default all)",
    )
    p.add_argument(
        "--engine",
        default=None,
        help="comma list of floor,cadenza,langgraph,dbos "
        "(default floor,cadenza; plus the peers with --peers)",
    )
    p.add_argument("--peers", action="store_true", help="also measure LangGraph and DBOS")
    p.add_argument("--repeat", type=int, default=3, help="best of K runs (default 3)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--timeout", type=float, default=900, help="seconds per child (default 900)")
    p.add_argument(
        "--no-fsyncs",
        action="store_true",
        help="don't count fsyncs (by default each SQLite cell runs once more under strace)",
    )
    p.add_argument(
        "--child",
        nargs=4,
        metavar=("ENGINE", "SCENARIO", "STORE", "VARIANT"),
        help=argparse.SUPPRESS,
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be >= 1")

    if args.child:
        engine, scenario, store, variant = args.child
        return child(engine, scenario, store, variant, args.repeat, args.quick)

    scenarios = _csv(args.scenario, SCENARIOS, "scenario")
    stores = _csv(args.store, STORES, "store")
    default_engines = "floor,cadenza" + (",langgraph,dbos" if args.peers else "")
    engines = _csv(args.engine or default_engines, ENGINES, "engine")

    notes: list[str] = []
    args.strace = None
    if not args.no_fsyncs and any(store != "memory" for store in stores):
        args.strace, why = find_strace()
        if why:
            notes.append(f"fsyncs not counted: {why}")
    plan: list[tuple[str, str, str, str]] = []
    for scenario in scenarios:
        for store in stores:
            for engine in engines:
                why = _missing(engine, store)
                if why:
                    if why not in notes:
                        notes.append(why)
                    continue
                vs = variants(engine, scenario, store)
                if not vs:
                    note = (
                        f"{NOT_APPLICABLE.get((engine, store), 'not applicable')}: "
                        f"no {engine} {store} rows"
                    )
                    if note not in notes:
                        notes.append(note)
                plan += [(engine, scenario, store, v) for v in vs]

    rows: list[dict[str, Any]] = []
    failed = 0
    for i, (engine, scenario, store, variant) in enumerate(plan, 1):
        r = run_cell(engine, scenario, store, variant, args)
        label = f"[{i}/{len(plan)}] {scenario} {engine}{'/' + variant if variant else ''} {store}"
        if "error" in r:
            failed += 1
            notes.append(f"{label[label.index(']') + 2 :]} FAILED: {r['error']}")
            print(f"{label}: FAILED {r['error']}", file=sys.stderr, flush=True)
        elif "skipped" in r:
            notes.append(r["skipped"])
            print(f"{label}: skipped", file=sys.stderr, flush=True)
        else:
            rows.append(r)
            if args.json:
                out = {
                    k: r[k]
                    for k in (
                        "scenario",
                        "engine",
                        "store",
                        "n",
                        "per_step_us",
                        "wall_s",
                        "peak_rss_mib",
                    )
                }
                if r.get("variant"):
                    out["variant"] = r["variant"]
                if "fsyncs" in r:
                    out["fsyncs"] = r["fsyncs"]
                    out["fsyncs_per_step"] = r["fsyncs_per_step"]
                print(json.dumps(out), flush=True)
            synced = f", {_fsyncs(r)} fsyncs/step" if "fsyncs" in r else ""
            print(f"{label}: {r['per_step_us']:.1f} us/step{synced}", file=sys.stderr, flush=True)

    if args.json:
        for note in dict.fromkeys(notes):
            print(f"note: {note}", file=sys.stderr)
    else:
        print_table(rows, list(dict.fromkeys(notes)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
