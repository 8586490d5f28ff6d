"""How long a command takes from the shell: whole processes, started afresh each time, so
that interpreter start-up and every import are counted as a user waits for them.

    python bench/startup.py [--repeat 10] [--runs 100000] [--json]

Each case runs ``--repeat`` times (interleaved, so that a slow moment of the machine falls on
every case alike) and its median is reported, with the floor, ``python -c pass``, measured in
the same run. ``cadenza runs list`` reads a SQLite store of ``--runs`` runs built first with
direct inserts through the store's own schema and statement (a run row each: listing reads no
events), so that building it takes seconds, not an hour of real runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from cadenza.store._rows import run_row
from cadenza.store._sqlite_sql import INSERT_RUN
from cadenza.store.base import RunRecord
from cadenza.store.sqlite import SQLiteStore

#: The budget of each case, in milliseconds (whole process, median).
TARGETS = {"import cadenza": 120, "cadenza --help": 200, "cadenza runs list": 300}

STATUSES = ("COMPLETED",) * 8 + ("FAILED", "WAITING_APPROVAL")


def build_store(path: Path, runs: int) -> None:
    """``runs`` run rows in a new SQLite store at ``path``: its schema made by the store
    itself, the rows written with its own INSERT statement, in one transaction."""

    async def create() -> None:
        store = SQLiteStore(path)
        await store.open()
        await store.close()

    asyncio.run(create())
    rng = random.Random(7)
    start = time.time() - runs
    rows = []
    for i in range(runs):
        status = STATUSES[i % len(STATUSES)]
        record = RunRecord(
            run_id=f"{rng.getrandbits(128):032x}",  # type: ignore[arg-type]
            workflow=("orders", "support", "moderation")[i % 3],
            version="v1",
            status=status,  # type: ignore[arg-type]
            created_at=start + i,
            updated_at=start + i + 0.25,
            error="step 'charge' failed: card declined" if status == "FAILED" else None,
        )
        rows.append(run_row(record, '{"amount": 10}'))
    with sqlite3.connect(path) as conn:
        conn.executemany(INSERT_RUN, rows)
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM runs").fetchone()
    assert count == runs, f"the store holds {count} runs, not {runs}"


def cadenza_command() -> list[str]:
    """The installed ``cadenza`` script next to this interpreter (what a user types)."""
    script = Path(sys.executable).parent / "cadenza"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cadenza.cli"]


def time_once(argv: list[str], env: dict[str, str], check: str | None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or (check is not None and check not in done.stdout):
        raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode}):\n{done.stderr}")
    return elapsed


def main(repeat: int, runs: int, as_json: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        built = time.perf_counter()
        build_store(db, runs)
        built = time.perf_counter() - built
        env = {**os.environ, "COLUMNS": "120"}
        env.pop("CADENZA_STORE", None)
        cli = cadenza_command()
        cases: dict[str, tuple[list[str], str | None]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], None),
            "import cadenza": ([sys.executable, "-c", "import cadenza"], None),
            "cadenza --help": ([*cli, "--help"], "Usage"),
            "cadenza runs list": ([*cli, "runs", "list", "--store", str(db)], "COMPLETED"),
        }
        for argv, check in cases.values():  # warm the file cache and the bytecode
            time_once(argv, env, check)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, (argv, check) in cases.items():
                samples[name].append(time_once(argv, env, check))
    medians = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    over = [name for name, limit in TARGETS.items() if medians[name] > limit]
    if as_json:
        print(
            json.dumps(
                {
                    "runs": runs,
                    "repeat": repeat,
                    "median_ms": {k: round(v, 1) for k, v in medians.items()},
                    "min_ms": {k: round(min(s) * 1000, 1) for k, s in samples.items()},
                    "targets_ms": TARGETS,
                    "over": over,
                }
            )
        )
    else:
        print(f"store: {runs:,} runs built in {built:.1f} s; median of {repeat} processes each")
        print(f"{'case':<22}{'median':>10}{'min':>10}{'target':>10}")
        for name, s in samples.items():
            target = f"{TARGETS[name]} ms" if name in TARGETS else "(floor)"
            mark = "  OVER" if name in over else ""
            line = f"{name:<22}{medians[name]:>7.1f} ms{min(s) * 1000:>7.1f} ms{target:>10}"
            print(line + mark)
    return 1 if over else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.exit(main(args.repeat, args.runs, args.json))
