"""Distributed throughput: Cadenza workers against DBOS queue workers on one PostgreSQL server.

    python bench/distributed.py [--runs 1000] [--workers 1,2,4] [--concurrency 32]
                                [--engine cadenza,dbos] [--repeat 1] [--json]

For each engine and each worker count: a fresh database on the server (``$CADENZA_PG``,
default ``postgresql://postgres@127.0.0.1:5432/postgres``; dropped afterwards), that many
worker processes started and idle, then ``--runs`` runs of a five-step workflow (each step
``n + 1``, async) submitted from this process; the clock runs from the first submission until
the database says every run has finished. Printed: runs/s and steps/s, and Cadenza's
throughput over DBOS's for the same worker count.

- Cadenza: ``cadenza worker --workflow bench/distributed.py:five --concurrency C`` processes
  (``Engine.submit``, claims with ``FOR UPDATE SKIP LOCKED``, ``LISTEN``/``NOTIFY``
  wake-ups, group commit).
- DBOS 3.4.0: processes running ``DBOS.launch()`` with a ``Queue("bench",
  worker_concurrency=C, polling_interval_sec=--dbos-poll)`` (DBOS's queues poll; its default
  interval is 1 s), runs enqueued with ``DBOSClient.enqueue_async``.

Both verify their work afterwards: every run finished, ``5 x runs`` steps recorded
(Cadenza ``step_completed`` events, DBOS ``operation_outputs`` rows) and each run's result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypedDict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from cadenza import Workflow  # noqa: E402
from cadenza.observe.logging import configure_logging  # noqa: E402

SERVER = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"
STEPS = 5
DBOS_APP = "cadenza-bench-distributed"
DBOS_VERSION = "bench"


class Count(TypedDict):
    n: int


async def inc(state: Count) -> Count:
    return {"n": state["n"] + 1}


five = Workflow("bench_five", state=Count)
for _i in range(STEPS):
    five.task(inc, name=f"inc{_i}")


class BenchError(RuntimeError):
    """An engine did not do the work it was asked to do."""


@dataclass
class Row:
    engine: str
    workers: int
    runs: int
    wall_s: float

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall_s

    @property
    def steps_per_s(self) -> float:
        return self.runs * STEPS / self.wall_s


# -- databases --------------------------------------------------------------------------------


def _database(name: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(SERVER)
    user, host, port = (
        info.get("user", "postgres"),
        info.get("host", "127.0.0.1"),
        info.get("port", "5432"),
    )
    return f"postgresql://{user}@{host}:{port}/{name}"


def _create(name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _database(name)


def _drop(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _count(dsn: str, query: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


async def _until_finished(dsn: str, query: str, runs: int) -> None:
    """Poll ``query`` (a count of finished runs) on one connection until it reaches ``runs``."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(query)).fetchone()
            if row is not None and row[0] >= runs:
                return
            await asyncio.sleep(0.02)


# -- worker processes -------------------------------------------------------------------------


def _spawn(cmd: list[str], ready: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if ready.encode() in line:
            return proc
    raise BenchError(f"worker exited ({proc.wait()}) before it was ready: {' '.join(cmd)}")


def _drain_output(procs: list[subprocess.Popen[bytes]]) -> None:
    """Keep reading the workers' output so that a full pipe never blocks them."""
    import threading

    def pump(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            pass

    for proc in procs:
        threading.Thread(target=pump, args=(proc,), daemon=True).start()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    for name in ("CADENZA_STORE", "CADENZA_DB", "CADENZA_PG"):
        env.pop(name, None)
    return env


# -- Cadenza ----------------------------------------------------------------------------------


async def _cadenza(dsn: str, runs: int) -> float:
    from cadenza import Engine
    from cadenza.store.postgres import PostgresStore

    target = f"{os.path.abspath(__file__)}:five"
    async with Engine(PostgresStore(dsn, max_size=10)) as client:
        await client.store.open()
        started = time.perf_counter()
        for first in range(0, runs, 500):
            await asyncio.gather(
                *(
                    client.submit(five, {"n": 0}, target=target)
                    for _ in range(first, min(runs, first + 500))
                )
            )
        query = "SELECT count(*) FROM runs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
        await _until_finished(dsn, query, runs)
        wall = time.perf_counter() - started
    done = _count(dsn, "SELECT count(*) FROM runs WHERE status = 'COMPLETED'")
    steps = _count(dsn, "SELECT count(*) FROM events WHERE type = 'step_completed'")
    finals = _count(dsn, "SELECT count(*) FROM snapshots WHERE (state->'values'->>'n')::int = 5")
    if (done, steps, finals) != (runs, runs * STEPS, runs):
        raise BenchError(f"cadenza: {done} completed, {steps} steps, {finals} with n == 5")
    return wall


def measure_cadenza(workers: int, runs: int, concurrency: int) -> float:
    name = f"cadenza_bench_{uuid.uuid4().hex[:10]}"
    dsn = _create(name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cmd = [
            sys.executable, "-m", "cadenza.cli", "worker", "--store", dsn,
            "--workflow", f"{os.path.abspath(__file__)}:five",
            "--concurrency", str(concurrency), "--log-level", "INFO",
        ]  # fmt: skip
        for _ in range(workers):
            procs.append(_spawn(cmd, "worker_started", _env()))
        _drain_output(procs)
        return asyncio.run(_cadenza(dsn, runs))
    finally:
        _stop(procs)
        _drop(name)


# -- DBOS -------------------------------------------------------------------------------------


def dbos_worker(dsn: str, index: int, concurrency: int, poll: float) -> None:
    """One DBOS worker process: serve the bench queue until SIGTERM."""
    import logging
    import threading

    from dbos import DBOS

    @DBOS.step(name="inc")
    async def step(n: int) -> int:
        return n + 1

    @DBOS.workflow(name="bench_five")
    async def bench_five(n: int) -> int:
        for _ in range(STEPS):
            n = await step(n)
        return n

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": DBOS_APP,
            "system_database_url": dsn,
            "application_version": DBOS_VERSION,
            "executor_id": f"bench-{index}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    DBOS.register_queue("bench", worker_concurrency=concurrency, polling_interval_sec=poll)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("dbos_ready", flush=True)
    stop.wait()
    DBOS.destroy()


async def _dbos(dsn: str, runs: int) -> float:
    from dbos import DBOSClient

    client = DBOSClient(system_database_url=dsn)
    try:
        options: Any = {
            "queue_name": "bench",
            "workflow_name": "bench_five",
            "app_version": DBOS_VERSION,
        }
        started = time.perf_counter()
        for first in range(0, runs, 500):
            await asyncio.gather(
                *(client.enqueue_async(options, 0) for _ in range(first, min(runs, first + 500)))
            )
        query = "SELECT count(*) FROM dbos.workflow_status WHERE status IN ('SUCCESS', 'ERROR')"
        await _until_finished(dsn, query, runs)
        wall = time.perf_counter() - started
    finally:
        client.destroy()
    done = _count(dsn, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'")
    steps = _count(dsn, "SELECT count(*) FROM dbos.operation_outputs WHERE function_name = 'inc'")
    if (done, steps) != (runs, runs * STEPS):
        raise BenchError(f"dbos: {done} succeeded, {steps} steps recorded")
    return wall


def measure_dbos(workers: int, runs: int, concurrency: int, poll: float) -> float:
    name = f"dbos_bench_{uuid.uuid4().hex[:10]}"
    dsn = _create(name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(workers):
            cmd = [
                sys.executable, os.path.abspath(__file__), "--dbos-worker", dsn, str(index),
                str(concurrency), str(poll),
            ]  # fmt: skip
            procs.append(_spawn(cmd, "dbos_ready", _env()))
        _drain_output(procs)
        return asyncio.run(_dbos(dsn, runs))
    finally:
        _stop(procs)
        _drop(name)


# -- the table --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="comma list of worker counts")
    parser.add_argument("--concurrency", type=int, default=32, help="runs per worker at once")
    parser.add_argument("--engine", default="cadenza,dbos", help="cadenza, dbos or both")
    parser.add_argument("--dbos-poll", type=float, default=0.1, help="DBOS queue poll (s)")
    parser.add_argument("--repeat", type=int, default=1, help="best of K")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--dbos-worker", nargs=4, metavar=("DSN", "I", "C", "POLL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.dbos_worker:
        dsn, index, concurrency, poll = args.dbos_worker
        dbos_worker(dsn, int(index), int(concurrency), float(poll))
        return 0
    configure_logging("WARNING")
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    counts = [int(w) for w in args.workers.split(",")]
    rows: list[Row] = []
    for workers in counts:
        for engine in engines:
            best = float("inf")
            for _ in range(args.repeat):
                print(f"... {engine} with {workers} worker(s), {args.runs} runs", file=sys.stderr)
                if engine == "cadenza":
                    wall = measure_cadenza(workers, args.runs, args.concurrency)
                elif engine == "dbos":
                    wall = measure_dbos(workers, args.runs, args.concurrency, args.dbos_poll)
                else:
                    parser.error(f"unknown engine {engine!r}")
                best = min(best, wall)
            rows.append(Row(engine, workers, args.runs, best))
    _print(rows, args.json)
    return 0


def _print(rows: list[Row], as_json: bool) -> None:
    """The table (or JSON lines); ``cadenza_x``: Cadenza's runs/s over this row's, for the
    same number of workers (``> 1``: Cadenza is faster)."""
    cadenza = {r.workers: r for r in rows if r.engine == "cadenza"}
    for r in rows:
        base = cadenza.get(r.workers)
        speedup = base.runs_per_s / r.runs_per_s if base else None
        if as_json:
            record = {
                "engine": r.engine,
                "workers": r.workers,
                "runs": r.runs,
                "wall_s": round(r.wall_s, 3),
                "runs_per_s": round(r.runs_per_s, 1),
                "steps_per_s": round(r.steps_per_s, 1),
                "cadenza_x": round(speedup, 2) if speedup else None,
            }
            print(json.dumps(record))
            continue
        if r is rows[0]:
            head = ["engine", "workers", "runs", "wall_s", "runs/s", "steps/s", "cadenza_x"]
            print(f"{head[0]:<8}" + "".join(f" {h:>9}" for h in head[1:]))
            print("-" * 68)
        ratio = f"{speedup:.2f}x" if speedup else "-"
        cells = [str(r.workers), str(r.runs), f"{r.wall_s:.2f}", f"{r.runs_per_s:.1f}"]
        cells += [f"{r.steps_per_s:.1f}", ratio]
        print(f"{r.engine:<8}" + "".join(f" {c:>9}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
