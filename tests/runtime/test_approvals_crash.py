"""The table of pending approvals is written in the transaction of the events that change
it, so a process killed at any moment leaves it equal to the fold of the logs: a process
that keeps requesting, deciding and cancelling approvals (``approvals_churn.py``) is killed
with SIGKILL at random points, and after each kill every run's rows are checked against its
log, and the listing against what the logs leave open."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cadenza import SQLiteStore, WorkflowStatus
from cadenza.runtime.progress import Progress
from cadenza.steps.approval import decided
from cadenza.store._approvals import stored_difference
from cadenza.store.base import Store

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
DSN = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"


def start(where: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    return subprocess.Popen(
        [sys.executable, str(HERE / "approvals_churn.py"), where],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def check(store: Store) -> int:
    """Every run's rows are the fold of its log, and the listing is what the waiting runs'
    logs leave undecided; returns how many requests wait."""
    await store.open()
    try:
        expected = []
        for run in await store.list_runs(limit=100_000):
            events = await store.read_events(run.run_id)
            stored = await store.read_stored(run.run_id)
            assert stored_difference(stored.approvals, events) is None, run.run_id
            if run.status is WorkflowStatus.WAITING_APPROVAL:
                progress = Progress(reducers={}).apply_all(events)
                for path, request in progress.approvals.items():
                    if decided(request) is None:
                        expected.append((request["since"], run.run_id, path))
        listed = [p.cursor for p in await store.pending_approvals(limit=100_000)]
        assert listed == sorted(expected)
        return len(listed)
    finally:
        await store.close()


def kill_repeatedly(where: str, store: Store, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(3):
        proc = start(where)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", "the churning process failed"
            try:
                proc.wait(timeout=rng.uniform(0.05, 0.6))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, "it churns until killed"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        asyncio.run(check(store))


@pytest.mark.parametrize("seed", [1, 2])
def test_sqlite_killed_at_random_points(tmp_path: Path, seed: int) -> None:
    db = tmp_path / "churn.db"
    kill_repeatedly(str(db), SQLiteStore(db), seed)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    schema = f"cadenza_churn_{uuid.uuid4().hex[:12]}"
    try:
        psycopg.connect(DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield schema
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_postgres_killed_at_random_points(pg_schema: str) -> None:
    from cadenza.store.postgres import PostgresStore

    where = f"{DSN}#{pg_schema}"
    kill_repeatedly(where, PostgresStore(DSN, schema=pg_schema), 3)
