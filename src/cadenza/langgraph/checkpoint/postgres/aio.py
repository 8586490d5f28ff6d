"""LangGraph's ``AsyncPostgresSaver``, with the checkpoints in a Cadenza PostgreSQL database.

The async twin of :class:`cadenza.langgraph.checkpoint.postgres.PostgresSaver`: ``conn`` is a
``psycopg.AsyncConnection`` in autocommit mode or a ``psycopg_pool.AsyncConnectionPool``. As
with LangGraph's, the saver is built inside a running event loop, and its sync methods may be
called only from other threads (they run on that loop and wait).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY
from cadenza.langgraph.checkpoint._postgres import (
    PostgresSaverBase,
    amigrate,
    require_autocommit,
    search_path,
)
from cadenza.observe.base import Observer
from cadenza.store.runlog import Op, adrive

__all__ = ["AsyncPostgresSaver"]

T = TypeVar("T")


class AsyncPostgresSaver(PostgresSaverBase):
    """A LangGraph checkpointer in a Cadenza PostgreSQL database, for async code."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any],
        *,
        serde: SerializerProtocol | None = None,
        schema: str | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(serde=serde, full_every=full_every, observers=observers)
        if not isinstance(conn, psycopg.AsyncConnection | AsyncConnectionPool):
            raise TypeError(
                "AsyncPostgresSaver takes a psycopg.AsyncConnection or a "
                f"psycopg_pool.AsyncConnectionPool, not {type(conn).__name__} (PostgresSaver "
                "takes sync ones)"
            )
        self.conn = conn
        self.schema = schema
        self.is_setup = False
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        schema: str | None = None,
        serde: SerializerProtocol | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> AsyncIterator[AsyncPostgresSaver]:
        """A saver on a new connection to ``conn_string``, closed on exit."""
        async with await psycopg.AsyncConnection.connect(
            conn_string, autocommit=True, prepare_threshold=0
        ) as conn:
            if schema is not None:
                await conn.execute(search_path(schema))
            yield cls(conn, serde=serde, schema=schema, full_every=full_every, observers=observers)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if isinstance(self.conn, AsyncConnectionPool):
            async with self.conn.connection() as conn:
                yield conn
        else:
            async with self.lock:
                yield self.conn

    async def setup(self) -> None:
        """Create the tables (Cadenza's migrations) if needed; idempotent, and done by the
        first call anyway."""
        async with self._connection() as conn:
            await self._setup(conn)

    async def _setup(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not self.is_setup:
            await amigrate(conn, self.schema)
            self.is_setup = True

    async def _arun(self, op: Op[T], *, write: bool) -> T:
        async with self._connection() as conn:
            if not self.is_setup:
                await self._setup(conn)
            else:
                require_autocommit(conn)
            async with conn.cursor(row_factory=tuple_row) as cur:
                if not write:
                    return await adrive(cur, op)
                async with conn.transaction():
                    return await adrive(cur, op)

    def _run(self, op: Op[T], *, write: bool) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "AsyncPostgresSaver's sync methods cannot be called from its event loop's "
                "thread (they would wait for that loop): use the async ones (aget_tuple, "
                "alist, aput, ...) or graph.ainvoke"
            )
        return asyncio.run_coroutine_threadsafe(self._arun(op, write=write), self.loop).result()
