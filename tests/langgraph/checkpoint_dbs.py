"""Where the checkpointer tests keep their checkpoints: a SQLite file, or a PostgreSQL database
of their own, created for the test and dropped afterwards, on the server named by
``$CADENZA_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``). PostgreSQL tests
skip, saying why, when the server cannot be reached."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cadenza.langgraph.checkpoint.postgres import PostgresSaver
from cadenza.langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
from cadenza.langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from cadenza.store.base import Store

ADMIN_DSN = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"

#: The savers under test: (database, whether the saver is the async class).
KINDS = {
    "sqlite": ("sqlite", False),
    "sqlite-async": ("sqlite", True),
    "postgres": ("postgres", False),
    "postgres-async": ("postgres", True),
}

_unreachable: list[str] = []


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, or ``None`` (checked once per test process)."""
    if not _unreachable:
        try:
            with psycopg.connect(ADMIN_DSN, connect_timeout=3):
                _unreachable.append("")
        except psycopg.OperationalError as exc:
            _unreachable.append(f"PostgreSQL not available at {ADMIN_DSN}: {exc}".strip())
    return _unreachable[0] or None


def create_database() -> str:
    """A new empty database; returns its DSN."""
    name = f"cadenza_lg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(ADMIN_DSN, dbname=name)


def drop_database(dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh place for checkpoints: a SQLite path, or the DSN of a new PostgreSQL database."""
    if KINDS[kind][0] == "sqlite":
        yield str(tmp_path / f"checkpoints-{uuid.uuid4().hex[:6]}.db")
        return
    reason = postgres_unreachable()
    if reason is not None:
        pytest.skip(reason)
    dsn = await asyncio.to_thread(create_database)
    try:
        yield dsn
    finally:
        await asyncio.to_thread(drop_database, dsn)


@asynccontextmanager
async def saver(kind: str, where: str, **options: Any) -> AsyncIterator[Any]:
    """A saver of ``kind`` on ``where`` (from :func:`database`), closed afterwards."""
    if kind == "sqlite":
        with SqliteSaver.from_conn_string(where, **options) as s:
            yield s
    elif kind == "sqlite-async":
        async with AsyncSqliteSaver.from_conn_string(where, **options) as a:
            yield a
    elif kind == "postgres":
        with PostgresSaver.from_conn_string(where, **options) as p:
            yield p
    else:
        async with AsyncPostgresSaver.from_conn_string(where, **options) as ap:
            yield ap


@asynccontextmanager
async def cadenza_store(kind: str, where: str) -> AsyncIterator[Store]:
    """Cadenza's own store on the same file or database."""
    if KINDS[kind][0] == "sqlite":
        from cadenza.store.sqlite import SQLiteStore

        store: Store = SQLiteStore(where)
    else:
        from cadenza.store.postgres import PostgresStore

        store = PostgresStore(where, max_size=2, connect_timeout=3)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
