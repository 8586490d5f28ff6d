"""The table of pending approvals as a view of the logs, on durable files:

- databases written before it existed (schema version 4) get it filled from their logs by the
  migration that creates it, in its transaction: the runs that wait are listed as before, and
  a run whose log does not decode is left out (``audit verify`` reports it) instead of
  stopping the store from opening;
- ``audit verify`` holds its rows to the logs: a row edited by hand is reported."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import pytest

from cadenza import Directory, Engine, SQLiteStore, Workflow
from cadenza.observe.audit_store import verify_store
from cadenza.store._approvals import stored_difference
from cadenza.store.base import Store

DSN = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"
PEOPLE = Directory({"olivia": frozenset({"officer"}), "omar": frozenset({"officer"})})
# What schema version 5 added, undone: the database as version 4 left it.
TO_VERSION_4 = [
    "DROP TABLE approval_approvers",
    "DROP TABLE pending_approvals",
    # version 6, the server's tables, comes after: back to 4 means without them too
    "DROP TABLE api_keys",
    "DROP TABLE idempotency_keys",
    "DROP TABLE inbound_webhooks",
    "DROP TABLE server_audit",
    "DELETE FROM schema_version WHERE version >= 5",
]


class S(TypedDict, total=False):
    n: int


def prepare(state: S) -> S:
    return {}


def review() -> Workflow:
    wf = Workflow("backfilled", state=S)
    wf.task(prepare)
    wf.approval("review", approvers=["officer"], quorum=2, show=["n"])
    return wf


async def waiting_runs(store: Store) -> list[str]:
    """Four runs: waiting, waiting with one approval of two, finished, cancelled."""
    async with Engine(store, directory=PEOPLE) as engine:
        runs = [(await engine.run(review(), {"n": n})).run_id for n in range(4)]
        await engine.decide(runs[1], "review", actor="olivia", approve=True)
        await engine.decide(runs[2], "review", actor="olivia", approve=True)
        await engine.decide(runs[2], "review", actor="omar", approve=True)
        await engine.cancel(runs[3])
        listed = await engine.pending_approvals()
    assert [(p["run_id"], p["approved_by"]) for p in listed] == [
        (runs[0], []),
        (runs[1], ["olivia"]),
    ]
    return runs


async def listed_after_reopening(store: Store) -> list[tuple[str, list[str]]]:
    async with Engine(store, directory=PEOPLE) as engine:
        listed = await engine.pending_approvals(for_user="omar")
        for run in await store.list_runs(limit=100):
            stored = await store.read_stored(run.run_id)
            events = await store.read_events(run.run_id)
            assert stored_difference(stored.approvals, events) is None
    return [(p["run_id"], p["approved_by"]) for p in listed]


async def test_sqlite_fills_the_table_from_the_logs(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    runs = await waiting_runs(SQLiteStore(db))
    with sqlite3.connect(db, isolation_level=None) as conn:
        for statement in TO_VERSION_4:
            conn.execute(statement)
    assert await listed_after_reopening(SQLiteStore(db)) == [(runs[0], []), (runs[1], ["olivia"])]


async def test_sqlite_leaves_out_a_run_whose_log_does_not_decode(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    runs = await waiting_runs(SQLiteStore(db))
    with sqlite3.connect(db, isolation_level=None) as conn:
        for statement in TO_VERSION_4:
            conn.execute(statement)
        conn.execute(
            "UPDATE events SET data = 'not json' WHERE run_id = ? AND type = 'approval_requested'",
            (runs[0],),
        )
    store = SQLiteStore(db)
    async with Engine(store, directory=PEOPLE) as engine:
        listed = await engine.pending_approvals()
        assert [p["run_id"] for p in listed] == [runs[1]]
        broken = {c.run_id for c in await verify_store(store) if c.broken is not None}
    assert broken == {runs[0]}


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    schema = f"cadenza_backfill_{uuid.uuid4().hex[:12]}"
    try:
        await (await psycopg.AsyncConnection.connect(DSN, connect_timeout=3)).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield schema
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def test_postgres_fills_the_table_from_the_logs(pg_schema: str) -> None:
    import psycopg
    from psycopg import sql

    from cadenza.store.postgres import PostgresStore

    runs = await waiting_runs(PostgresStore(DSN, schema=pg_schema))
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        for statement in TO_VERSION_4:
            await conn.execute(statement.encode())
    reopened = PostgresStore(DSN, schema=pg_schema)
    assert await listed_after_reopening(reopened) == [(runs[0], []), (runs[1], ["olivia"])]


@pytest.mark.parametrize(
    ("edit", "found"),
    [
        ("UPDATE pending_approvals SET approved_by = '[\"mallory\"]'", "approved_by"),
        ("DELETE FROM pending_approvals", "lack it"),
        ("UPDATE pending_approvals SET path = 'other'", "is not open in its log"),
    ],
)
async def test_audit_verify_reports_rows_that_are_not_the_fold(
    tmp_path: Path, edit: str, found: str
) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    async with Engine(store, directory=PEOPLE) as engine:
        waiting = await engine.run(review(), {"n": 1})
        assert all(c.broken is None for c in await verify_store(store))
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute(edit)
    async with SQLiteStore(db) as reopened:
        (check,) = await verify_store(reopened)
    assert check.run_id == waiting.run_id and check.broken is not None
    assert check.broken.reason == "record" and found in check.broken.detail


async def test_a_row_that_does_not_decode_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    """A decision is never refused for the view's sake: the log holds it, and the rows of its
    run are folded from the log again."""
    db = tmp_path / "runs.db"
    async with Engine(SQLiteStore(db), directory=PEOPLE) as engine:
        waiting = await engine.run(review(), {"n": 1})
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("UPDATE pending_approvals SET approved_by = 'not json'")
    store = SQLiteStore(db)
    async with Engine(store, directory=PEOPLE) as engine:
        engine.register(review())
        await engine.decide(waiting.run_id, "review", actor="olivia", approve=True)
        (pending,) = await engine.pending_approvals()
        assert pending["approved_by"] == ["olivia"]
        assert all(c.broken is None for c in await verify_store(store))
