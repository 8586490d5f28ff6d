"""LangGraph's ``SqliteSaver``, with the checkpoints in a Cadenza SQLite store file.

Use it where LangGraph's own is used::

    from cadenza.langgraph.checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string("cadenza.db") as saver:
        graph = builder.compile(checkpointer=saver)
        graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})

The file is the one ``cadenza runs`` reads: each thread is a run there, each checkpoint an
event in its audit-chained log, written through the store's run log (see
:mod:`cadenza.langgraph.checkpoint._runlog`) and told to the saver's ``observers``; channel
values are stored once per version, lists as the items appended since the version before
(:mod:`cadenza.langgraph.checkpoint._delta`). The tables are created by Cadenza's schema
migrations, which :meth:`SqliteSaver.setup` (or the first call) applies.

Every call runs in one transaction on the saver's connection, under a lock (the connection may
be shared by threads: LangGraph calls a sync checkpointer from its worker threads). The async
methods run the same statements inline, on the event loop's thread: a short SQLite statement
costs less than a hop to another thread; a statement waits at most ``timeout`` seconds for a
lock held by another process. The file is in WAL mode; with ``fast=True`` (the default) it is
``synchronous=NORMAL``: a commit is not fsynced, which survives a process crash but may lose the
last checkpoints on a power loss (the graph then resumes from an earlier one); ``fast=False``
fsyncs every commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.core.errors import StoreError
from cadenza.langgraph.checkpoint._base import CadenzaSaverBase
from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY
from cadenza.langgraph.checkpoint._heads import HeadCache
from cadenza.langgraph.checkpoint._sql import SQLITE
from cadenza.observe.base import Observer
from cadenza.store.runlog import Op, drive
from cadenza.store.sqlite import RUN_LOG, prepare

__all__ = ["SqliteSaver"]

T = TypeVar("T")

#: Seconds a statement waits for a lock another process holds.
DEFAULT_TIMEOUT = 5.0


def connect(path: str, timeout: float = DEFAULT_TIMEOUT) -> sqlite3.Connection:
    """A connection as the savers want it: usable from any thread (they lock around it), in
    autocommit mode (they begin and commit themselves)."""
    try:
        return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc


class SqliteSaverBase(CadenzaSaverBase):
    """The SQLite savers' shared body: the connection, its set-up and the transaction."""

    _dialect = SQLITE
    _run_log = RUN_LOG

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        serde: SerializerProtocol | None = None,
        fast: bool = True,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(serde=serde, full_every=full_every, observers=observers)
        if not isinstance(conn, sqlite3.Connection):
            raise TypeError(
                f"{type(self).__name__} takes a sqlite3.Connection, not {type(conn).__name__}; "
                f"or use {type(self).__name__}.from_conn_string(path)"
            )
        self.conn = conn
        self.fast = fast
        self.is_setup = False
        self.lock = threading.Lock()
        self._cur: sqlite3.Cursor | None = None
        self._heads = self._tips = HeadCache()

    def _setup(self) -> None:
        """Configure the connection and apply Cadenza's migrations (once; the lock is held)."""
        if self.is_setup:
            return
        conn = self.conn
        if conn.in_transaction:
            raise StoreError(
                "the SQLite connection given to the checkpointer has a transaction open; "
                "commit it first"
            )
        conn.isolation_level = None  # the saver begins and commits its transactions itself
        try:
            prepare(conn, fast=self.fast, busy_timeout=DEFAULT_TIMEOUT)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prepare the SQLite database for checkpoints: {exc}") from exc
        self._cur = conn.cursor()
        self.is_setup = True

    def _run(self, op: Op[T], *, write: bool) -> T:
        with self.lock:
            if not self.is_setup:
                self._setup()
            cur, conn, tips = self._cur, self.conn, self._tips
            assert cur is not None
            if not write:
                cur.execute("BEGIN")
                try:
                    result = drive(cur, op)
                except BaseException:
                    if conn.in_transaction:
                        cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
                return result
            cur.execute("BEGIN IMMEDIATE")
            try:
                tips.check(conn, cur)
                result = drive(cur, op)
                tips.seal(cur)
                cur.execute("COMMIT")
            except BaseException:
                tips.clear()
                if conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            tips.committed(conn)
            return result

    async def _arun(self, op: Op[T], *, write: bool) -> T:
        return self._run(op, write=write)


class SqliteSaver(SqliteSaverBase):
    """A LangGraph checkpointer in a Cadenza SQLite store file (see the module docstring).

    ``conn`` must allow use from other threads (``check_same_thread=False``) when LangGraph
    runs the graph synchronously; :meth:`from_conn_string` opens one that does. Both the sync
    and the async methods work."""

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        serde: SerializerProtocol | None = None,
        fast: bool = True,
        full_every: int = DEFAULT_FULL_EVERY,
        timeout: float = DEFAULT_TIMEOUT,
        observers: Sequence[Observer] = (),
    ) -> Iterator[SqliteSaver]:
        """A saver on the SQLite file ``conn_string`` (``":memory:"``: a private database),
        closed on exit."""
        conn = connect(conn_string, timeout)
        try:
            yield cls(conn, serde=serde, fast=fast, full_every=full_every, observers=observers)
        finally:
            conn.close()

    def setup(self) -> None:
        """Create the tables (Cadenza's migrations) if needed; idempotent, and done by the
        first call anyway."""
        with self.lock:
            self._setup()
