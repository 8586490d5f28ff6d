"""What the PostgreSQL savers share: the dialect, connection checks, and applying Cadenza's
schema migrations (:func:`cadenza.store.postgres.migrate_postgres`, written for an async
connection) through the savers' own connections, sync or async, whatever their row factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from cadenza.langgraph.checkpoint._base import CadenzaSaverBase
from cadenza.langgraph.checkpoint._sql import POSTGRES
from cadenza.store.postgres import RUN_LOG, migrate_postgres

T = TypeVar("T")


class PostgresSaverBase(CadenzaSaverBase):
    _dialect = POSTGRES
    _run_log = RUN_LOG


def require_autocommit(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """The savers run each call in a transaction of their own: the connection must not be
    inside one already."""
    if not conn.autocommit:
        raise ValueError(
            "the checkpointer's PostgreSQL connection must be in autocommit mode: connect with "
            "autocommit=True (for a pool: kwargs={'autocommit': True})"
        )


def search_path(schema: str) -> sql.Composed:
    return sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))


class _AsyncCursorView:
    def __init__(self, cur: Any) -> None:
        self._cur = cur

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def execute(self, query: Any, params: Any = None) -> _AsyncCursorView:
        self._cur.execute(query, params)
        return self


class _SyncAsAsync:
    """Just enough of an ``AsyncConnection`` over a sync connection to run the migration."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        with self._conn.transaction():
            yield

    async def execute(self, query: Any, params: Any = None) -> _AsyncCursorView:
        cur = self._conn.cursor(row_factory=tuple_row)
        cur.execute(query, params, prepare=False)  # scripts cannot be prepared
        return _AsyncCursorView(cur)

    def cursor(self) -> _AsyncCursorView:
        return _AsyncCursorView(self._conn.cursor(row_factory=tuple_row))


class _TupleRows:
    """An ``AsyncConnection`` whose ``execute`` gives tuple rows whatever its row factory."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    def transaction(self) -> Any:
        return self._conn.transaction()

    async def execute(self, query: Any, params: Any = None) -> Any:
        cur = self._conn.cursor(row_factory=tuple_row)
        await cur.execute(query, params, prepare=False)  # scripts cannot be prepared
        return cur


def _complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (all it awaits completes at once) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("the migration waited for something: it cannot run on a sync connection")


def migrate(conn: psycopg.Connection[Any], schema: str | None) -> int:
    """Apply Cadenza's PostgreSQL migrations on a sync connection."""
    require_autocommit(conn)
    return _complete(migrate_postgres(cast(Any, _SyncAsAsync(conn)), schema))


async def amigrate(conn: psycopg.AsyncConnection[Any], schema: str | None) -> int:
    """Apply Cadenza's PostgreSQL migrations on an async connection."""
    require_autocommit(conn)
    return await migrate_postgres(cast(Any, _TupleRows(conn)), schema)
