"""LangGraph's ``AsyncSqliteSaver``, with the checkpoints in a Cadenza SQLite store file.

The same saver as :class:`cadenza.langgraph.checkpoint.sqlite.SqliteSaver`, with the async
construction LangGraph's has (``async with AsyncSqliteSaver.from_conn_string(path)``, ``await
saver.setup()``). It takes a ``sqlite3.Connection``, not an ``aiosqlite`` one: its statements
run inline on the event loop's thread (see the package's module docstring for why), so its
sync methods work from any thread, the loop's included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY
from cadenza.langgraph.checkpoint.sqlite import DEFAULT_TIMEOUT, SqliteSaverBase, connect
from cadenza.observe.base import Observer

__all__ = ["AsyncSqliteSaver"]


class AsyncSqliteSaver(SqliteSaverBase):
    """A LangGraph checkpointer in a Cadenza SQLite store file, built in async code."""

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        serde: SerializerProtocol | None = None,
        fast: bool = True,
        full_every: int = DEFAULT_FULL_EVERY,
        timeout: float = DEFAULT_TIMEOUT,
        observers: Sequence[Observer] = (),
    ) -> AsyncIterator[AsyncSqliteSaver]:
        """A saver on the SQLite file ``conn_string``, closed on exit."""
        conn = connect(conn_string, timeout)
        try:
            yield cls(conn, serde=serde, fast=fast, full_every=full_every, observers=observers)
        finally:
            conn.close()

    async def setup(self) -> None:
        """Create the tables (Cadenza's migrations) if needed; idempotent."""
        with self.lock:
            self._setup()
