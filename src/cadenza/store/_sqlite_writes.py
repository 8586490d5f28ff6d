"""The SQLite store's group commit: the writes queued during one event-loop iteration, each of
which knows how to apply itself inside the batch's transaction and how to report a failure of
its own, and the :class:`GroupCommit` that writes them (see :mod:`cadenza.store.sqlite`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.ids import RunId
from cadenza.observe.audit import GENESIS
from cadenza.store import _sqlite_approvals
from cadenza.store import _sqlite_sql as q
from cadenza.store._approvals import Change
from cadenza.store.base import LeaseLost

__all__ = ["WRITE_ERRORS", "Append", "CreateRun", "GroupCommit", "Write"]

log = logging.getLogger("cadenza.store.sqlite")

# Errors that fail one write of a batch and not the others: refusals (conflicts, unknown runs)
# and values SQLite cannot take (a NULL ts, an unsupported type, an out-of-range integer).
WRITE_ERRORS = (StoreError, sqlite3.IntegrityError, sqlite3.ProgrammingError, OverflowError)

# How many runs' last seq numbers (and hashes) to remember before starting afresh (each miss
# costs a SELECT).
_LAST_SEQ_CACHE_LIMIT = 100_000


class Write(ABC):
    """One write of a batch. ``apply`` runs inside the batch's transaction (and a savepoint);
    it raises one of ``WRITE_ERRORS`` to fail this write alone."""

    __slots__ = ("error", "future", "result", "run_id")
    logged = False  # appends to the run's event log (so later writes of the run depend on it)
    finished = False  # moved the run to a terminal status (forget its last seq afterwards)

    def __init__(self, run_id: RunId) -> None:
        self.run_id = run_id
        self.future: asyncio.Future[Any] | None = None
        self.result: Any = None
        self.error: StoreError | None = None

    @abstractmethod
    def apply(self, cur: sqlite3.Cursor) -> Any:
        """Do the write inside the batch's transaction; raise to fail this write alone."""


class CreateRun(Write):
    __slots__ = ("approvals", "events", "row")
    logged = True

    def __init__(
        self,
        run_id: RunId,
        row: tuple[Any, ...],
        events: list[tuple[Any, ...]],
        approvals: Sequence[Change] = (),
    ):
        super().__init__(run_id)
        self.row = row
        self.events = events
        self.approvals = approvals  # what the first events change in pending approvals

    def apply(self, cur: sqlite3.Cursor) -> None:
        if cur.execute(q.INSERT_RUN, self.row).rowcount != 1:
            raise ConflictError(f"run {self.run_id!r} already exists")
        insert_events(cur, self.run_id, self.events)
        if self.approvals:
            _sqlite_approvals.apply(cur, self.run_id, self.approvals)


class Append(Write):
    __slots__ = (
        "approvals", "epoch", "events", "finished", "snapshot", "status", "status_error",
        "updated_at",
    )  # fmt: skip
    logged = True

    def __init__(
        self,
        run_id: RunId,
        events: list[tuple[Any, ...]],
        status: str | None,
        error: str | None,
        updated_at: float,
        snapshot: tuple[Any, ...] | None,
        finished: bool,
        epoch: int | None = None,
        approvals: Sequence[Change] = (),
    ) -> None:
        # the hot path: fields set here rather than through super().__init__
        self.run_id = run_id
        self.future = None
        self.result = None
        self.error = None
        self.events = events
        self.status = status
        self.status_error = error
        self.updated_at = updated_at
        self.snapshot = snapshot
        self.finished = finished
        self.epoch = epoch
        self.approvals = approvals

    def apply(self, cur: sqlite3.Cursor) -> None:
        epoch = self.epoch
        if epoch is not None and self.events:
            insert_events(cur, self.run_id, [(*r, self.run_id, epoch) for r in self.events], True)
            if cur.rowcount != len(self.events):
                _check_epoch(cur, self.run_id, epoch)
        elif epoch is not None:
            _check_epoch(cur, self.run_id, epoch)
        elif self.events:
            insert_events(cur, self.run_id, self.events)
        if self.status is not None or self.status_error is not None:
            cur.execute(
                q.UPDATE_FINISHED if self.finished else q.UPDATE_STATUS,
                (self.status, self.status_error, self.updated_at, self.run_id),
            )
        if self.snapshot is not None:
            cur.execute(q.UPSERT_SNAPSHOT, self.snapshot)
        if self.approvals:  # in the transaction (and savepoint) of the events that say so
            _sqlite_approvals.apply(cur, self.run_id, self.approvals)


def _check_epoch(cur: sqlite3.Cursor, run_id: RunId, epoch: int) -> None:
    row = cur.execute(q.EPOCH, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    if row[0] != epoch:
        raise LeaseLost(run_id, epoch, row[0])


def insert_events(
    cur: sqlite3.Cursor, run_id: RunId, rows: list[tuple[Any, ...]], fenced: bool = False
) -> None:
    """Insert event rows; a taken ``seq`` is a :class:`ConflictError`."""
    statement = q.INSERT_FENCED if fenced else q.INSERT_EVENT
    try:
        if len(rows) == 1:
            cur.execute(statement, rows[0])
        else:
            cur.executemany(statement, rows)
    except sqlite3.IntegrityError as exc:
        if getattr(exc, "sqlite_errorname", "") not in (
            "SQLITE_CONSTRAINT_PRIMARYKEY",
            "SQLITE_CONSTRAINT_UNIQUE",
        ):
            raise
        raise ConflictError(
            f"run {run_id!r}: event seq {rows[0][1]}..{rows[-1][1]} is already taken "
            "(another writer appended first)"
        ) from exc


class GroupCommit:
    """The batching writer of one SQLite store on one connection.

    Every write submitted during one event-loop iteration joins a batch, written in a single
    ``BEGIN IMMEDIATE … COMMIT`` scheduled with ``loop.call_soon``; a write's future resolves
    once the batch has committed. Held writes (``durable=False`` appends) wait for the next
    batch or :meth:`flush`.

    It also keeps, per run, the last seq and audit hash the run's log will have once every
    queued write has committed (:meth:`last`, :meth:`project`): appends continue the seq and
    the hash chain from there. Present only for runs known to exist; never ahead of the file
    unless a queued write fails, and then the entry is dropped; another process appending
    makes it lag, which the primary key catches."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path  # the database, and the store's name, for messages
        self.name = name
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self._queue: list[Write] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last: dict[RunId, tuple[int, str]] = {}

    def attach(self, conn: sqlite3.Connection) -> None:
        """Write through ``conn`` (the store opened it)."""
        self._conn, self._cur = conn, conn.cursor()

    def detach(self) -> None:
        """Write what is queued, then forget the connection (the store closes it)."""
        if self._conn is None:
            return
        self.flush()
        self._conn = self._cur = None
        self._last.clear()

    def cursor(self) -> sqlite3.Cursor:
        cur = self._cur
        if cur is None:
            raise StoreError(f"{self.name} is not open; await store.open() first")
        return cur

    # -- where logs end ------------------------------------------------------------------------

    def knows(self, run_id: RunId) -> bool:
        """Whether the run is known to exist (or to be queued for creation)."""
        return run_id in self._last

    def last(self, run_id: RunId) -> tuple[int, str]:
        """The seq and audit hash the run's log ends with once the queue is written."""
        cached = self._last.get(run_id)
        if cached is not None:
            return cached
        row = self.cursor().execute(q.HEAD, (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return row[3] or 0, row[4] or GENESIS

    def project(self, run_id: RunId, seq: int, digest: str) -> None:
        """The run's log will end at ``seq`` (hash ``digest``) once its queued writes commit."""
        self._last[run_id] = (seq, digest)

    # -- queueing ------------------------------------------------------------------------------

    def submit(self, write: Write) -> asyncio.Future[Any]:
        """Queue ``write`` for the next batch; the future resolves once it has committed."""
        if self._cur is None:
            self.cursor()  # raises: not open
        loop = asyncio.get_running_loop()
        write.future = future = loop.create_future()
        self._queue.append(write)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._write)
        return future

    def hold(self, write: Write) -> None:
        """Queue ``write`` without waiting for it: it is written with the next batch."""
        self._queue.append(write)

    def flush(self) -> None:
        """Write every queued write now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._write()

    # -- writing -------------------------------------------------------------------------------

    def _write(self) -> None:
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
                except WRITE_ERRORS as exc:
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
                except WRITE_ERRORS:
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

    def _abort(self, writes: list[Write], exc: Exception) -> None:
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


def _apply(cur: sqlite3.Cursor, writes: list[Write], *, careful: bool) -> set[RunId]:
    """Apply a batch's writes inside its transaction; returns the runs whose log lost a write.

    Not ``careful``: the first failing write raises (the caller undoes the pass). ``careful``:
    each write runs in its own savepoint, and a failure is recorded on the write alone."""
    failed: set[RunId] = set()
    for write in writes:
        write.result = write.error = None
        future = write.future
        if future is not None and future.done():  # its caller was cancelled: skip it
            if write.logged:
                failed.add(write.run_id)
            continue
        if write.logged and write.run_id in failed:
            write.error = ConflictError(
                f"run {write.run_id!r}: an earlier write of this run failed, "
                "so these events no longer follow its log"
            )
            continue
        if not careful:
            write.result = write.apply(cur)
            continue
        cur.execute("SAVEPOINT w")
        try:
            write.result = write.apply(cur)
        except WRITE_ERRORS as exc:
            cur.execute("ROLLBACK TO w")
            write.error = _as_store_error(write, exc)
            if write.logged:
                failed.add(write.run_id)
        cur.execute("RELEASE w")
    return failed


def _as_store_error(write: Write, exc: Exception) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    error = StoreError(f"run {write.run_id!r}: cannot store this write: {exc}")
    error.__cause__ = exc
    return error
