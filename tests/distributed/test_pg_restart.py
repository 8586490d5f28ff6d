"""PostgreSQL restarts (``pg_ctlcluster ... restart``) twice while worker processes execute
hundreds of runs. The workers keep their runs through each outage and continue them when the
server is back: every run completes, no step is executed twice (nothing was abandoned and
taken over: the lease outlasts the restart), no task exception goes unretrieved, and each
worker logs at most one warning per outage.

It restarts the server the other tests use (and waits until it accepts connections again),
so it runs only where that server is this machine's cluster and ``pg_ctlcluster`` may
restart it; otherwise it is skipped, saying why."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from cadenza import Engine, WorkflowStatus
from cadenza.core.events import EventType
from cadenza.store.postgres import PostgresStore

from .conftest import SERVER, Workers
from .flows import OUTAGE_STEPS
from .test_takeover import flow

RUNS = 300
RESTARTS = 2
LEASE = 20.0  # longer than a restart takes, even on a loaded machine
PATIENCE = 300.0


def _cluster() -> list[str]:
    """The command that restarts the local cluster (skips the test if there is none)."""
    if "127.0.0.1" not in SERVER and "localhost" not in SERVER:
        pytest.skip(f"the test server {SERVER} is not this machine's")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.skip("pg_ctlcluster is not installed: cannot restart PostgreSQL")
    if os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs root")
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        pytest.skip("no PostgreSQL cluster under /etc/postgresql")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def _restart(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    limit = time.monotonic() + 120
    while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode != 0:
        assert time.monotonic() < limit, "PostgreSQL did not come back after its restart"
        time.sleep(0.1)


def _finished(dsn: str) -> int | None:
    """How many runs have finished (``None`` while the server cannot be reached)."""
    try:
        with psycopg.connect(dsn, connect_timeout=3) as db:
            row = db.execute(
                "SELECT count(*) FROM runs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else 0


async def _until_finished(dsn: str, count: int) -> None:
    limit = time.monotonic() + PATIENCE
    while (done := _finished(dsn)) is None or done < count:
        assert time.monotonic() < limit, f"only {done} of {count} runs finished"
        await asyncio.sleep(0.1)


async def test_workers_keep_their_runs_through_postgresql_restarts(
    dsn: str, workers: Workers, tmp_path: Path
) -> None:
    restart = _cluster()
    marks = tmp_path / "marks"
    os.environ["CADENZA_TEST_MARKS"] = str(marks)  # the workers inherit it
    try:
        workflow, target = flow("outage")
        async with Engine(PostgresStore(dsn)) as client:
            for _ in range(RUNS):
                await client.submit(workflow, {}, target=target)
        procs = [
            workers.start("--concurrency", "100", "--interval", "0.5", workflow="outage",
                          lease=LEASE)
            for _ in range(2)
        ]  # fmt: skip
        for restarted in range(RESTARTS):
            await _until_finished(dsn, RUNS * (restarted + 1) // (RESTARTS + 2))
            _restart(restart)
        await _until_finished(dsn, RUNS)
    finally:
        os.environ.pop("CADENZA_TEST_MARKS", None)
    assert all(proc.poll() is None for proc in procs), "a worker died"

    async with PostgresStore(dsn) as store:
        runs = await store.list_runs(limit=RUNS + 1)
        assert Counter(r.status for r in runs) == {WorkflowStatus.COMPLETED: RUNS}
        for run in runs:
            events = await store.read_events(run.run_id)
            done = Counter(e.path for e in events if e.type is EventType.STEP_COMPLETED)
            assert done == Counter(dict.fromkeys(OUTAGE_STEPS, 1)), (run.run_id, done)
    executions = Counter(line.split()[0] for line in marks.read_text().splitlines())
    assert len(executions) == RUNS * len(OUTAGE_STEPS)
    assert set(executions.values()) == {1}, [k for k, n in executions.items() if n > 1][:5]

    noticed = 0
    for proc in procs:
        output = workers.output(proc)
        assert "Task exception was never retrieved" not in output
        assert "Traceback" not in output, output[-3000:]
        events = []
        for line in output.splitlines():
            if line.startswith("{"):
                events.append(json.loads(line).get("event"))
        assert events.count("store_unavailable") <= RESTARTS, events
        assert "run_store_error" not in events and "lease_lost" not in events
        noticed += events.count("store_unavailable")
    assert noticed, "no worker noticed a restart: the test did not interrupt anything"
