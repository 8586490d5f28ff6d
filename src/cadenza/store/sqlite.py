"""A durable store in one SQLite file: the default for a single machine.

Writes are *group-committed*: every write (``create_run``, ``append``, claims, renewals,
releases and commands, see :mod:`cadenza.store._sqlite_leases`) issued during one event-loop
iteration joins a batch, and the batch is written in a single ``BEGIN IMMEDIATE … COMMIT``
scheduled with ``loop.call_soon``. A fenced append (``epoch=``) is stored only while the run's
lease epoch is still the writer's, checked inside the batch under SQLite's one write lock (so
it holds across processes on one machine). One run's
:class:`ConflictError` fails only that write: the batch is first applied without per-write
savepoints, and if a write fails, that pass is rolled back and redone with each write in its own
``SAVEPOINT`` (conflicts are rare; a savepoint per write costs about a third of a large
batch's time). A caller's
awaitable resolves after the batch has committed, so a lone sequential run still sees each append
on disk before it continues, while 500 concurrent runs share one commit (and one fsync).

All SQLite calls happen on the event-loop thread: they are short, and a thread hop costs more
than a WAL commit. The one place that can block is ``BEGIN IMMEDIATE`` while another *process*
holds the write lock; it waits at most ``busy_timeout`` seconds, then the batch fails with
:class:`StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Collection, Sequence
from typing import Any

from pydantic_core import from_json

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL, WorkflowStatus
from cadenza.observe.audit import GENESIS
from cadenza.store import _sqlite_approvals
from cadenza.store._approvals import changes
from cadenza.store._rows import dumps as _dumps
from cadenza.store._rows import event_rows as _event_rows
from cadenza.store._rows import events_from_rows, run_filter, run_row
from cadenza.store._rows import run_from_row as _run_from_row
from cadenza.store._sqlite_audit import read_stored, stored_run_ids
from cadenza.store._sqlite_leases import SQLiteLeases
from cadenza.store._sqlite_migrate import migrate_sqlite, split_sql_script, use_wal
from cadenza.store._sqlite_writes import (
    _GET_RUN,
    _LAST_SEQ,
    _LOAD_SNAPSHOT,
    _READ_EVENTS,
    _RUN_COLUMNS,
    _RUN_EXISTS,
    _WRITE_ERRORS,
    _Append,
    _apply,
    _as_store_error,
    _CreateRun,
    _Write,
)
from cadenza.store.base import PendingApproval, RunRecord, Snapshot, StoredLog
from cadenza.store.run_ids import CANDIDATES, check_prefix, pick_run_id, prefix_upper_bound

__all__ = ["SQLiteStore", "migrate_sqlite", "split_sql_script"]

log = logging.getLogger(__name__)

DEFAULT_PATH = "./cadenza.db"
ENV_PATH = "CADENZA_DB"

# How many runs' last seq numbers (and hashes) to remember before starting afresh (each miss
# costs a SELECT).
_LAST_SEQ_CACHE_LIMIT = 100_000

# A range over the primary key's index (see prefix_upper_bound).
_IDS_WITH_PREFIX = (
    "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT ?"
)


class SQLiteStore(SQLiteLeases):
    """Runs, event logs and snapshots in one SQLite file (WAL mode).

    ``path`` defaults to ``$CADENZA_DB``, else ``./cadenza.db``; ``":memory:"`` gives a private
    in-memory database (tests). Call :meth:`open` before use (it is idempotent) and
    :meth:`close` at the end, which also writes held ``durable=False`` events.

    Durability: by default ``synchronous=FULL``, so a commit is fsynced before the awaitable
    resolves and survives power loss. ``fast=True`` selects ``synchronous=NORMAL``: commits are
    not fsynced (the WAL is synced at checkpoints), typically an order of magnitude cheaper per
    commit and still safe against a *process* crash, but the last transactions before a power
    loss or OS crash can be lost (the file stays consistent; those runs resume from an earlier
    event and redo the lost steps). Use it where re-running a few steps is acceptable.

    Reads see committed data only: held ``durable=False`` events appear once they are written.
    Use the store from the thread of the event loop that opened it.

    ``busy_timeout`` (seconds) is how long a statement waits for a lock held by another process
    (another runner, the CLI) before failing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fast: bool = False,
        busy_timeout: float = 5.0,
    ) -> None:
        if path is None:
            path = os.environ.get(ENV_PATH) or DEFAULT_PATH
        self.path: str = os.fspath(path)
        self.fast = fast
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        # Writes waiting for the next batch, in call order (durable=False ones included).
        self._queue: list[_Write] = []
        self._flush_handle: asyncio.Handle | None = None
        # run -> (last seq, its audit hash) as they will be once every queued write has
        # committed: appends continue the seq and the hash chain from here. Present only for
        # runs known to exist. Never ahead of the file unless a queued write fails, and then the
        # entry is dropped; another process appending makes it lag, which the primary key catches.
        self._last: dict[RunId, tuple[int, str]] = {}

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, fast={self.fast})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, cached_statements=64
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        try:
            use_wal(conn, self.busy_timeout)
            conn.execute(f"PRAGMA synchronous = {'NORMAL' if self.fast else 'FULL'}")
            migrate_sqlite(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._cur = conn.cursor()

    async def close(self) -> None:
        if self._conn is None:
            return
        self._flush_now()
        conn, self._conn, self._cur = self._conn, None, None
        self._last.clear()
        with contextlib.suppress(sqlite3.Error):  # advisory only
            conn.execute("PRAGMA optimize")
        conn.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def flush(self) -> None:
        """Write every queued write now, held ``durable=False`` events included."""
        self._require_open()
        self._flush_now()

    # -- writes (group-committed) --------------------------------------------------------------

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        self._require_open()
        run_id = run.run_id
        if run_id in self._last:  # a run the file does not know yet is checked by its key
            raise ConflictError(f"run {run_id!r} already exists")
        rows, head = _event_rows(run_id, 0, GENESIS, events)
        try:
            input_json = _dumps(run.input)
        except ValueError as exc:
            raise StoreError(f"run {run_id!r}: input cannot be stored as JSON: {exc}") from exc
        row = run_row(run, input_json)
        self._last[run_id] = (len(rows), head)
        await self._submit(_CreateRun(run_id, row, rows, changes(events)))

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
        epoch: int | None = None,
    ) -> None:
        cur = self._require_open()
        cached = self._last.get(run_id)
        if cached is None:
            exists, max_seq, last_hash = cur.execute(_LAST_SEQ, (run_id,)).fetchone()
            if not exists:
                raise RunNotFound(run_id)
            last, head = max_seq or 0, last_hash or GENESIS
        else:
            last, head = cached
        rows, head = _event_rows(run_id, last, head, events)
        snapshot_row = None
        if snapshot is not None:
            try:
                snapshot_row = (
                    run_id,
                    snapshot.seq,
                    _dumps(snapshot.state),
                    _dumps(snapshot.buffers),
                )
            except ValueError as exc:
                raise StoreError(
                    f"run {run_id!r}: snapshot cannot be stored as JSON: {exc}"
                ) from exc
        self._last[run_id] = (last + len(rows), head)
        write = _Append(
            run_id,
            rows,
            str(status) if status is not None else None,
            error,
            time.time() if status is not None or error is not None else 0.0,
            snapshot_row,
            status in TERMINAL,
            epoch,
            changes(events),
        )
        if not durable:
            self._queue.append(write)  # written with the next batch, or by close()
            return
        loop = asyncio.get_running_loop()  # _submit, inlined
        write.future = future = loop.create_future()
        self._queue.append(write)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        await future

    def _submit(self, write: _Write) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        write.future = future = loop.create_future()
        self._queue.append(write)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush)
        return future

    def _flush_now(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()

    def _flush(self) -> None:
        """Write the queued writes in one transaction and resolve their futures."""
        self._flush_handle = None
        writes, self._queue = self._queue, []
        if not writes:
            return
        cur = self._cur
        assert cur is not None
        try:
            cur.execute("BEGIN IMMEDIATE")
            if len(writes) == 1:
                try:
                    failed = _apply(cur, writes, careful=False)
                except _WRITE_ERRORS as exc:
                    cur.execute("ROLLBACK")
                    writes[0].error = _as_store_error(writes[0], exc)
                    failed = {writes[0].run_id}
                else:
                    cur.execute("COMMIT")
            else:
                # Optimistically without a savepoint per write (they cost ~20% of a batch);
                # if one write fails, undo the pass and redo it with them.
                cur.execute("SAVEPOINT batch")
                try:
                    failed = _apply(cur, writes, careful=False)
                except _WRITE_ERRORS:
                    cur.execute("ROLLBACK TO batch")
                    failed = _apply(cur, writes, careful=True)
                cur.execute("COMMIT")
        except Exception as exc:
            self._abort(writes, exc)
            return

        last = self._last
        for run_id in failed:
            last.pop(run_id, None)
        if len(last) > _LAST_SEQ_CACHE_LIMIT:
            last.clear()  # safe: nothing is queued, so the file holds every projected seq
        for write in writes:
            if write.finished:
                last.pop(write.run_id, None)
            future = write.future
            if future is None:
                if write.error is not None:
                    log.warning("dropped held events of run %r: %s", write.run_id, write.error)
            elif not future.done():
                if write.error is not None:
                    future.set_exception(write.error)
                else:
                    future.set_result(write.result)

    def _abort(self, writes: list[_Write], exc: Exception) -> None:
        """The batch as a whole failed (lock timeout, I/O error): nothing of it is stored."""
        conn = self._conn
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the connection may be broken already
                conn.execute("ROLLBACK")
        self._last.clear()
        message = f"writing to SQLite database {self.path!r} failed: {exc}"
        for write in writes:
            future = write.future
            if future is None:
                log.warning("dropped held events of run %r: %s", write.run_id, exc)
            elif not future.done():
                error = StoreError(message)
                error.__cause__ = exc
                future.set_exception(error)

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: RunId) -> RunRecord:
        row = self._require_open().execute(_GET_RUN, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _run_from_row(row)

    async def list_runs(
        self,
        *,
        status: Collection[WorkflowStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        cur = self._require_open()
        found = run_filter(status, workflow, limit, mark="?")
        if found is None:
            return []
        where, params = found
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where}ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [_run_from_row(row) for row in cur.execute(sql, params).fetchall()]

    async def resolve_run_id(self, prefix: str) -> RunId:
        check_prefix(prefix)
        bounds = (prefix, prefix_upper_bound(prefix), CANDIDATES)
        rows = self._require_open().execute(_IDS_WITH_PREFIX, bounds).fetchall()
        return pick_run_id(prefix, [row[0] for row in rows])

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        cur = self._require_open()
        rows = cur.execute(_READ_EVENTS, (run_id, after_seq)).fetchall()
        if not rows and cur.execute(_RUN_EXISTS, (run_id,)).fetchone() is None:
            raise RunNotFound(run_id)
        return events_from_rows(run_id, rows)

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        cur = self._require_open()
        row = cur.execute(_LOAD_SNAPSHOT, (run_id,)).fetchone()
        if row is None:
            if cur.execute(_RUN_EXISTS, (run_id,)).fetchone() is None:
                raise RunNotFound(run_id)
            return None
        seq, state, buffers = row
        return Snapshot(seq=seq, state=from_json(state), buffers=from_json(buffers))

    async def pending_approvals(
        self,
        *,
        approvers: Collection[str] | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 100,
    ) -> list[PendingApproval]:
        return _sqlite_approvals.pending(self._require_open(), approvers, after, limit)

    async def stored_run_ids(self) -> list[RunId]:
        self._require_open()
        assert self._conn is not None
        return stored_run_ids(self._conn)

    async def read_stored(self, run_id: RunId) -> StoredLog:
        self._require_open()
        assert self._conn is not None
        return read_stored(self._conn, run_id)

    def _require_open(self) -> sqlite3.Cursor:
        cur = self._cur
        if cur is None:
            raise StoreError(f"{self!r} is not open; await store.open() first")
        return cur
