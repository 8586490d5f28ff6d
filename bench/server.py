"""The HTTP API under load: `cadenza serve` as a real process, driven over loopback by a pool
of httpx clients in this process.

    python bench/server.py [--store sqlite,postgres] [--runs 500] [--reads 2000]
                           [--concurrency 32] [--json]

For each store: a fresh one (a SQLite file in a temporary folder; a new database on the
PostgreSQL server at ``$CADENZA_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres``,
with two ``cadenza worker`` processes executing), a key, then

- starts: ``--runs`` POSTs of a two-step workflow, ``--concurrency`` at a time (runs started
  per second, p50/p99 latency of a POST);
- reads: ``--reads`` GETs of a run, as many at a time (reads per second, p50/p99);
- SSE: the all-runs stream open while the runs execute; for every event received, the time
  from its commit (the event's own timestamp, taken when it was recorded: the same machine's
  clock) to its arrival here (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"


class Pair(TypedDict, total=False):
    n: int
    done: bool


def _two() -> Any:
    from cadenza import Workflow

    wf = Workflow("bench_pair", state=Pair)

    @wf.step
    async def first(state: Pair) -> Pair:
        return {"n": state.get("n", 0) + 1}

    @wf.step
    async def second(state: Pair) -> Pair:
        return {"done": True}

    wf.chain(first, second)
    return wf


pair = _two()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _cadenza(*args: str) -> list[str]:
    return [sys.executable, "-m", "cadenza.cli", *args]


def _start(args: list[str], log: Path, ready: str) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        found = re.search(ready, log.read_text(errors="replace"))
        if found:
            return process, found.group(0)
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{args[3]} did not start:\n{log.read_text()}")
        time.sleep(0.02)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def _load(url: str, key: str, runs: int, reads: int, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=120) as client:  # fmt: skip
        lags: list[float] = []
        finished: set[str] = set()
        ready = asyncio.Event()

        async def follow() -> None:
            async with client.stream("GET", "/v1/events/stream") as stream:
                ready.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        lags.append(time.time() - event["ts"])
                        if event["data"].get("to") == "COMPLETED":
                            finished.add(event["run_id"])
                            if len(finished) == runs:
                                return

        streaming = asyncio.ensure_future(follow())
        await ready.wait()
        gate = asyncio.Semaphore(concurrency)
        started: list[str] = []
        post_times: list[float] = []

        async def post(i: int) -> None:
            async with gate:
                t = time.perf_counter()
                answer = await client.post("/v1/workflows/bench_pair/runs",
                                           json={"input": {"n": i}})  # fmt: skip
                post_times.append(time.perf_counter() - t)
                answer.raise_for_status()
                started.append(answer.json()["run_id"])

        t0 = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(runs)))
        start_wall = time.perf_counter() - t0
        await asyncio.wait_for(streaming, 600)
        read_times: list[float] = []

        async def get(i: int) -> None:
            async with gate:
                t = time.perf_counter()
                answer = await client.get(f"/v1/runs/{started[i % len(started)]}")
                read_times.append(time.perf_counter() - t)
                answer.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(get(i) for i in range(reads)))
        read_wall = time.perf_counter() - t0
    return {
        "starts_per_s": runs / start_wall,
        "start_p50_ms": _pct(post_times, 0.5),
        "start_p99_ms": _pct(post_times, 0.99),
        "reads_per_s": reads / read_wall,
        "read_p50_ms": _pct(read_times, 0.5),
        "read_p99_ms": _pct(read_times, 0.99),
        "sse_events": len(lags),
        "sse_p50_ms": _pct(lags, 0.5),
        "sse_p99_ms": _pct(lags, 0.99),
        "sse_mean_ms": statistics.fmean(lags) * 1000 if lags else 0.0,
    }


def _database() -> str:
    import psycopg
    from psycopg import sql

    name = f"cadenza_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def bench(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    database = None
    if kind == "sqlite":
        store = str(tmp / "bench.db")
    else:
        database = _database()
        store = PG.rsplit("/", 1)[0] + f"/{database}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        made = subprocess.run(_cadenza("keys", "create", "--name", "bench", "--role", "operator",
                                       "--store", store), env=_env(), capture_output=True,
                              text=True, check=True)  # fmt: skip
        key = made.stdout.strip()
        target = f"{Path(__file__).resolve()}:pair"
        if kind == "postgres":
            for n in range(2):
                worker, _ = _start(
                    _cadenza("worker", "--store", store, "-w", target, "-c", "64"),
                    tmp / f"worker-{n}.log", "worker_started",
                )  # fmt: skip
                processes.append(worker)
        server, line = _start(
            _cadenza("serve", "--store", store, "--port", "0", "-w", target,
                     "--poll-interval", "0.05"),
            tmp / f"serve-{kind}.log", r"listening on http://[0-9.:]+",
        )  # fmt: skip
        processes.append(server)
        url = line.removeprefix("listening on ")
        result = asyncio.run(_load(url, key, args.runs, args.reads, args.concurrency))
        return {"store": kind, **result}
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        if database:
            _drop(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.store.split(","):
            results.append(bench(kind, args, Path(folder)))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['store']:>8}: {r['starts_per_s']:7.0f} starts/s (p50 {r['start_p50_ms']:.1f} ms,"
            f" p99 {r['start_p99_ms']:.1f} ms); {r['reads_per_s']:7.0f} reads/s (p50 "
            f"{r['read_p50_ms']:.1f} ms, p99 {r['read_p99_ms']:.1f} ms); SSE commit to receive "
            f"p50 {r['sse_p50_ms']:.1f} ms, p99 {r['sse_p99_ms']:.1f} ms ({r['sse_events']} events)"
        )


if __name__ == "__main__":
    main()
