"""THE CHAOS TEST: worker processes are SIGKILLed and replaced at random, every few hundred
milliseconds, while they execute thousands of runs of a five-step workflow with a parallel
branch, until every run has finished. Then:

- every run completed, and no step's completion is recorded twice;
- every step's side effect (a row its handler inserts, in its own transaction, before it
  returns) is there at least once; a key is there more than once only for attempts that did
  not complete: the log names the worker that completed the step, and every other attempt of
  it was made by a worker that was killed (or that lost the run's lease) before it could
  record one;
- every run's audit chain verifies.

Scale it with ``CADENZA_CHAOS_RUNS`` (default 2000), ``CADENZA_CHAOS_WORKERS`` (4) and
``CADENZA_CHAOS_SEED``; e.g. ``CADENZA_CHAOS_RUNS=20000 CADENZA_CHAOS_WORKERS=8 pytest -m chaos
tests/distributed``. It runs by default; ``-m "not chaos"`` leaves it out."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter, defaultdict

import psycopg
import pytest

from cadenza import Engine, WorkflowStatus
from cadenza.core.events import EventType
from cadenza.observe.audit import verify
from cadenza.store.postgres import PostgresStore

from .conftest import Workers
from .flows import CHAOS_STEPS
from .test_takeover import flow

RUNS = int(os.environ.get("CADENZA_CHAOS_RUNS", "2000"))
WORKERS = int(os.environ.get("CADENZA_CHAOS_WORKERS", "4"))
SEED = int(os.environ.get("CADENZA_CHAOS_SEED", "20240611"))
LEASE = 2.0
#: Only a hang fails on this; a healthy run of the default size takes well under a minute here.
PATIENCE = 600.0


@pytest.mark.chaos
async def test_chaos_kill_workers_at_random_until_every_run_is_done(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    rng = random.Random(SEED)
    workflow, target = flow("chaos")
    async with Engine(PostgresStore(dsn, max_size=8)) as client:
        for start in range(0, RUNS, 200):
            await asyncio.gather(
                *(
                    client.submit(workflow, {}, target=target)
                    for _ in range(start, min(RUNS, start + 200))
                )
            )

    def start_worker() -> object:
        return workers.start(
            "--concurrency", "32", "--interval", "0.5", workflow="chaos", lease=LEASE
        )

    live = [start_worker() for _ in range(WORKERS)]
    killed: set[int] = set()
    began = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as db:
        while True:
            await asyncio.sleep(rng.uniform(0.15, 0.6))
            unfinished = db.execute(
                "SELECT count(*) FROM runs WHERE status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            ).fetchone()
            if unfinished == (0,):
                break
            assert time.monotonic() - began < PATIENCE, f"{unfinished[0]} runs still unfinished"
            victim = live.pop(rng.randrange(len(live)))
            victim.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            victim.wait()  # type: ignore[attr-defined]
            killed.add(victim.pid)  # type: ignore[attr-defined]
            live.append(start_worker())
    took = time.monotonic() - began
    for proc in live:
        proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for proc in live:
        proc.wait(timeout=60)  # type: ignore[attr-defined]
    print(f"\nchaos: {RUNS} runs, {len(killed)} workers killed, {took:.1f}s")
    assert len(killed) >= 3

    lost_leases = _lost_leases(workers)
    runs = await store.list_runs(limit=RUNS + 1)
    assert len(runs) == RUNS
    assert Counter(r.status for r in runs) == {WorkflowStatus.COMPLETED: RUNS}
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT key, step, attempt, pid FROM effects").fetchall()
    attempts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key, _step, attempt, pid in rows:
        attempts[key].append((attempt, pid))
    duplicates = 0
    for run in runs:
        events = await store.read_events(run.run_id)
        assert verify(events) is None, run.run_id
        done = Counter(e.path for e in events if e.type is EventType.STEP_COMPLETED)
        assert done == Counter({**dict.fromkeys(CHAOS_STEPS, 1), "fan": 1}), (run.run_id, done)
        for event in events:
            if event.type is not EventType.STEP_COMPLETED or event.path == "fan":
                continue
            key = f"{run.run_id}:{event.path}"
            made = attempts[key]
            completer = (event.attempt, event.data["update"]["by"][event.path])
            assert completer in made, (key, made, completer)  # the effect of the recorded attempt
            others = list(made)
            others.remove(completer)
            for _attempt, pid in others:  # an attempt that never completed: its worker died
                assert pid in killed or (pid, run.run_id) in lost_leases, (key, made, completer)
            duplicates += len(others)
    assert len(rows) == RUNS * len(CHAOS_STEPS) + duplicates
    print(f"chaos: {duplicates} side effects repeated by attempts their worker did not finish")


def _lost_leases(workers: Workers) -> set[tuple[int, str]]:
    """(pid, run) for every run a surviving worker reported having lost the lease of."""
    import json

    lost = set()
    for proc in workers.procs:
        for line in workers.output(proc).splitlines():
            if '"lease_lost"' in line:
                lost.add((proc.pid, json.loads(line)["run_id"]))
    return lost
