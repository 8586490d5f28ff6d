"""LangGraph's ``PostgresSaver``, with the checkpoints in a Cadenza PostgreSQL database.

Use it where LangGraph's own is used::

    from cadenza.langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string("postgresql://...") as saver:
        graph = builder.compile(checkpointer=saver)

The database is the one Cadenza's :class:`~cadenza.store.postgres.PostgresStore` uses (in
``schema``, or the connection's search path): each thread is a run there, each checkpoint an
event in its audit-chained log, and channel values are stored once per version, lists as the
items appended since the version before (see :mod:`cadenza.langgraph.checkpoint.sqlite` for
the whole picture). :meth:`PostgresSaver.setup` (or the first call) applies Cadenza's schema
migrations, under the store's advisory lock.

``conn`` is a ``psycopg.Connection`` in autocommit mode (used by one call at a time, under a
lock) or a ``psycopg_pool.ConnectionPool`` of such connections. Every call is one transaction;
calls that change a thread lock its run's row first, so several processes may share threads.
The async methods run the sync ones in a worker thread; :mod:`.aio` has the native async saver.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY
from cadenza.langgraph.checkpoint._postgres import (
    PostgresSaverBase,
    migrate,
    require_autocommit,
    search_path,
)
from cadenza.observe.base import Observer
from cadenza.store.runlog import Op, drive

__all__ = ["PostgresSaver"]

T = TypeVar("T")


class PostgresSaver(PostgresSaverBase):
    """A LangGraph checkpointer in a Cadenza PostgreSQL database (see the module docstring).

    ``schema`` names the schema that holds Cadenza's tables when :meth:`setup` runs (created if
    missing); ``None``: the connection's current schema."""

    def __init__(
        self,
        conn: psycopg.Connection[Any] | ConnectionPool[Any],
        *,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(serde=serde, full_every=full_every, observers=observers)
        if not isinstance(conn, psycopg.Connection | ConnectionPool):
            raise TypeError(
                "PostgresSaver takes a psycopg.Connection or a psycopg_pool.ConnectionPool, not "
                f"{type(conn).__name__} (AsyncPostgresSaver takes async ones)"
            )
        self.conn = conn
        self.schema = schema
        self.is_setup = False
        self.lock = threading.Lock()

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        schema: str | None = None,
        serde: SerializerProtocol | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> Iterator[PostgresSaver]:
        """A saver on a new connection to ``conn_string``, closed on exit."""
        with psycopg.Connection.connect(conn_string, autocommit=True, prepare_threshold=0) as conn:
            if schema is not None:
                conn.execute(search_path(schema))
            yield cls(conn, serde=serde, schema=schema, full_every=full_every, observers=observers)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if isinstance(self.conn, ConnectionPool):
            with self.conn.connection() as conn:
                yield conn
        else:
            with self.lock:
                yield self.conn

    def setup(self) -> None:
        """Create the tables (Cadenza's migrations) if needed; idempotent, and done by the
        first call anyway."""
        with self._connection() as conn:
            self._setup(conn)

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        if not self.is_setup:
            migrate(conn, self.schema)
            self.is_setup = True

    def _run(self, op: Op[T], *, write: bool) -> T:
        with self._connection() as conn:
            if not self.is_setup:
                self._setup(conn)
            else:
                require_autocommit(conn)
            with conn.cursor(row_factory=tuple_row) as cur:
                if not write:
                    return drive(cur, op)
                with conn.transaction():
                    return drive(cur, op)

    async def _arun(self, op: Op[T], *, write: bool) -> T:
        return await asyncio.to_thread(self._run, op, write=write)
