"""A durable store in one SQLite file: the default for a single machine.

Writes are *group-committed* (:class:`~cadenza.store._sqlite_writes.GroupCommit`): every write
(``create_run``, ``append``, claims, renewals, releases and commands, see
:mod:`cadenza.store._sqlite_leases`) issued during one event-loop iteration joins a batch, and
the batch is written in a single ``BEGIN IMMEDIATE … COMMIT`` scheduled with
``loop.call_soon``. A fenced append (``epoch=``) is stored only while the run's lease epoch is
still the writer's, checked inside the batch under SQLite's one write lock (so it holds across
processes on one machine). One run's :class:`ConflictError` fails only that write: the batch is
first applied without per-write savepoints, and if a write fails, that pass is rolled back and
redone with each write in its own ``SAVEPOINT`` (conflicts are rare; a savepoint per write
costs about a third of a large batch's time). A caller's awaitable resolves after the batch has
committed, so a lone sequential run still sees each append on disk before it continues, while
500 concurrent runs share one commit (and one fsync).

A writer outside the engine (the LangGraph checkpointers) keeps runs in the file through
:data:`RUN_LOG`, on a connection of its own prepared by :func:`prepare`: the same statements,
rows and audit chain as the store's.

All SQLite calls happen on the event-loop thread: they are short, and a thread hop costs more
than a WAL commit. The one place that can block is ``BEGIN IMMEDIATE`` while another *process*
holds the write lock; it waits at most ``busy_timeout`` seconds, then the batch fails with
:class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Collection, Sequence

from pydantic_core import from_json

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL, WorkflowStatus
from cadenza.observe.audit import GENESIS
from cadenza.store import _sqlite_approvals
from cadenza.store import _sqlite_sql as q
from cadenza.store._approvals import changes
from cadenza.store._rows import RUN_COLUMNS, dumps, event_rows, run_filter, run_from_row, run_row
from cadenza.store._sql_runlog import SQLiteRunLog
from cadenza.store._sqlite_audit import read_stored, stored_run_ids
from cadenza.store._sqlite_leases import SQLiteLeases
from cadenza.store._sqlite_migrate import migrate_sqlite, split_sql_script, use_wal
from cadenza.store._sqlite_writes import Append, CreateRun, GroupCommit
from cadenza.store.base import PendingApproval, RunRecord, Snapshot, StoredLog
from cadenza.store.run_ids import CANDIDATES, check_prefix, pick_run_id, prefix_upper_bound
from cadenza.store.runlog import RunLog, drive

__all__ = ["RUN_LOG", "SQLiteStore", "migrate_sqlite", "prepare", "split_sql_script"]

DEFAULT_PATH = "./cadenza.db"
ENV_PATH = "CADENZA_DB"

#: The run log of every SQLite store file (see :mod:`cadenza.store.runlog`): drive its
#: operations on a connection :func:`prepare` set up, inside a ``BEGIN IMMEDIATE`` transaction.
RUN_LOG: RunLog = SQLiteRunLog()

# A range over the primary key's index (see prefix_upper_bound).
_IDS_WITH_PREFIX = (
    "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT ?"
)


def prepare(conn: sqlite3.Connection, *, fast: bool, busy_timeout: float) -> None:
    """Make a connection's file a store file: WAL mode, ``synchronous`` as ``fast`` says (see
    :class:`SQLiteStore`), the schema up to date. What a connection that writes runs to the
    file needs first; raises :class:`sqlite3.Error`."""
    use_wal(conn, busy_timeout)
    conn.execute(f"PRAGMA synchronous = {'NORMAL' if fast else 'FULL'}")
    migrate_sqlite(conn)


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

    run_log: RunLog = RUN_LOG

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
        self._cur: sqlite3.Cursor | None = None  # for reads; writes go through the group commit
        super().__init__(GroupCommit(self.path, repr(self)))

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
            prepare(conn, fast=self.fast, busy_timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot prepare SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._cur = conn.cursor()
        self._writer.attach(conn)

    async def close(self) -> None:
        if self._conn is None:
            return
        self._writer.detach()
        conn, self._conn, self._cur = self._conn, None, None
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
        self._writer.flush()

    # -- writes (group-committed) --------------------------------------------------------------

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        self._require_open()
        run_id = run.run_id
        writer = self._writer
        if writer.knows(run_id):  # a run the file does not know yet is checked by its key
            raise ConflictError(f"run {run_id!r} already exists")
        rows, head = event_rows(run_id, 0, GENESIS, events)
        try:
            input_json = dumps(run.input)
        except ValueError as exc:
            raise StoreError(f"run {run_id!r}: input cannot be stored as JSON: {exc}") from exc
        row = run_row(run, input_json)
        writer.project(run_id, len(rows), head)
        await writer.submit(CreateRun(run_id, row, rows, changes(events)))

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
        self._require_open()
        writer = self._writer
        last, head = writer.last(run_id)
        rows, head = event_rows(run_id, last, head, events)
        snapshot_row = None
        if snapshot is not None:
            try:
                snapshot_row = (
                    run_id,
                    snapshot.seq,
                    dumps(snapshot.state),
                    dumps(snapshot.buffers),
                )
            except ValueError as exc:
                raise StoreError(
                    f"run {run_id!r}: snapshot cannot be stored as JSON: {exc}"
                ) from exc
        writer.project(run_id, last + len(rows), head)
        write = Append(
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
            writer.hold(write)  # written with the next batch, or by close()
            return
        await writer.submit(write)

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: RunId) -> RunRecord:
        row = self._require_open().execute(q.GET_RUN, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return run_from_row(row)

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
        sql = f"SELECT {RUN_COLUMNS} FROM runs {where}ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [run_from_row(row) for row in cur.execute(sql, params).fetchall()]

    async def resolve_run_id(self, prefix: str) -> RunId:
        check_prefix(prefix)
        bounds = (prefix, prefix_upper_bound(prefix), CANDIDATES)
        rows = self._require_open().execute(_IDS_WITH_PREFIX, bounds).fetchall()
        return pick_run_id(prefix, [row[0] for row in rows])

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        return drive(self._require_open(), RUN_LOG.read(run_id, after_seq=after_seq))

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        cur = self._require_open()
        row = cur.execute(q.LOAD_SNAPSHOT, (run_id,)).fetchone()
        if row is None:
            if cur.execute(q.RUN_EXISTS, (run_id,)).fetchone() is None:
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
