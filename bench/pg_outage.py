"""How long runs stall when PostgreSQL restarts under them.

    python bench/pg_outage.py [--runs 1000] [--workers 3] [--concurrency 50] [--steps 100]
                              [--pause 0.05] [--every 5 20] [--dsn postgresql://...]

A fresh database gets ``--runs`` runs of a chain of ``--steps`` steps (each sleeps
``--pause`` seconds and touches nothing else); ``--workers`` ``cadenza worker`` processes
drain them while the local cluster is restarted (``pg_ctlcluster ... restart``, as root) every
``--every`` seconds (uniformly drawn), until every run has finished. Then, for each restart,
the runs *interrupted* by it (executing: an event in the second before the restart began)
and, for each, the time from PostgreSQL starting again (``pg_postmaster_start_time()``, a
little before it accepts connections, so the delay is if anything overstated) to the
first of its events stored after that (the bench adds a ``stored_at`` column to the events
table, defaulting to PostgreSQL's ``clock_timestamp()`` as each row is inserted).
Printed: restarts, runs interrupted, p50/p95/max of that delay, and what the workers logged
(warnings, tracebacks, unretrieved task exceptions).

``PYTHONPATH`` decides which Cadenza the workers run (to compare versions)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

HERE = Path(__file__).resolve().parent
STEPS = int(os.environ.get("CADENZA_BENCH_STEPS", "100"))
PAUSE = float(os.environ.get("CADENZA_BENCH_PAUSE", "0.05"))


class State(TypedDict, total=False):
    n: int


def _flow() -> Any:
    from cadenza import Workflow

    wf = Workflow("outage_bench", state=State)

    def make(i: int) -> Any:
        async def step(state: State) -> State:
            await asyncio.sleep(PAUSE)
            return {"n": state.get("n", 0) + 1}

        step.__name__ = f"s{i}"
        return step

    for i in range(STEPS):
        wf.task(make(i))
    return wf


flow = _flow()


def _cluster_restart() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def _ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0


def _started(dsn: str) -> float:
    """When the server (re)started: a little before it accepted connections, so a delay
    counted from it is an upper bound of the real one."""
    import psycopg

    with psycopg.connect(dsn) as db:
        row = db.execute("SELECT extract(epoch FROM pg_postmaster_start_time())").fetchone()
    assert row is not None
    return float(row[0])


def _unfinished(dsn: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as db:
            row = db.execute(
                "SELECT count(*) FROM runs WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


async def main() -> None:
    global STEPS, PAUSE, flow
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--every", type=float, nargs=2, default=(5.0, 20.0))
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    STEPS, PAUSE = args.steps, args.pause
    flow = _flow()  # the workers build the same one from the environment below
    rng = random.Random(args.seed)

    import psycopg
    from psycopg import sql

    from cadenza import Engine
    from cadenza.store.postgres import PostgresStore

    name = f"cadenza_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = args.dsn.rsplit("/", 1)[0] + f"/{name}"
    logs = Path(tempfile.mkdtemp(prefix="cadenza-outage-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with Engine(PostgresStore(dsn)) as client:
            await asyncio.gather(*(client.submit(flow, {}) for _ in range(args.runs)))
        with psycopg.connect(dsn, autocommit=True) as conn:  # when each event row was written
            conn.execute(
                "ALTER TABLE events ADD COLUMN stored_at double precision "
                "DEFAULT extract(epoch FROM clock_timestamp())"
            )
        env = dict(os.environ, CADENZA_BENCH_STEPS=str(STEPS), CADENZA_BENCH_PAUSE=str(PAUSE))
        for i in range(args.workers):
            out = open(logs / f"worker-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
            command = [
                sys.executable, "-m", "cadenza.cli", "worker", "--store", dsn,
                "--workflow", f"{HERE / 'pg_outage.py'}:flow",
                "--concurrency", str(args.concurrency), "--log-level", "WARNING",
            ]  # fmt: skip
            procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        restarts: list[tuple[float, float]] = []  # (restart began, accepting again)
        began = time.time()
        while True:
            wait_until = time.monotonic() + rng.uniform(*args.every)
            while time.monotonic() < wait_until:
                await asyncio.sleep(0.2)
                if _unfinished(dsn) == 0:
                    break
            if _unfinished(dsn) == 0:
                break
            down = time.time()
            subprocess.run(_cluster_restart(), check=True, capture_output=True)
            while not _ready():
                time.sleep(0.02)
            restarts.append((down, _started(dsn)))
        took = time.time() - began
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)

    delays: list[float] = []
    interrupted = 0
    with psycopg.connect(dsn) as db:
        query = "SELECT run_id, seq, type, stored_at FROM events ORDER BY run_id, seq"
        rows = db.execute(query).fetchall()
        statuses = Counter(r for (r,) in db.execute("SELECT status FROM runs").fetchall())
    by_run: dict[str, list[tuple[float, str]]] = {}
    for run_id, _seq, type_, ts in rows:
        by_run.setdefault(run_id, []).append((ts, type_))
    for down, back in restarts:
        for events in by_run.values():
            busy = [t for t, _ in events if down - 1.0 <= t < down]
            after = [t for t, _ in events if t >= back]
            if not busy or not after:
                continue  # not executing when the restart began (queued, or finished)
            interrupted += 1
            delays.append(min(after) - back)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))

    words: Counter[str] = Counter()
    for log in logs.glob("worker-*.log"):
        text = log.read_text(errors="replace")
        words["tracebacks"] += text.count("Traceback")
        words["unretrieved task exceptions"] += text.count("Task exception was never retrieved")
        for line in text.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("level") in ("warning", "error"):
                    words[f"{entry.get('level')}: {entry.get('event')}"] += 1
            elif line.strip():
                words["other lines"] += 1
    delays.sort()
    print(f"{args.runs} runs of {STEPS} steps x {PAUSE}s, {args.workers} workers, {took:.1f}s")
    print(f"final statuses: {dict(statuses)}")
    print(f"restarts: {len(restarts)}, down for (until it started again): "
          + ", ".join(f"{back - down:.1f}s" for down, back in restarts))  # fmt: skip
    if delays:
        p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
        print(
            f"runs interrupted: {interrupted}; PostgreSQL back -> next event: "
            f"p50 {statistics.median(delays):.2f}s, p95 {p95:.2f}s, max {delays[-1]:.2f}s"
        )
    print(f"worker logs: {dict(words)}")


if __name__ == "__main__":
    asyncio.run(main())
