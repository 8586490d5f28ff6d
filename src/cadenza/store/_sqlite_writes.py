"""The SQLite store's queued writes and their SQL: each write knows how to apply itself
inside the batch transaction, and how to report a failure that is its own."""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.ids import RunId
from cadenza.store import _sqlite_approvals
from cadenza.store._approvals import Change
from cadenza.store._rows import RUN_COLUMNS
from cadenza.store.base import LeaseLost

_RUN_COLUMNS = RUN_COLUMNS
_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join(['?'] * 16)})"
_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The same, stored only while the run's lease epoch is the writer's (the check costs one
# B-tree lookup inside the statement, not another statement).
_INSERT_FENCED = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND epoch = ?)"
)
_UPDATE_STATUS = (
    "UPDATE runs SET status = coalesce(?, status), error = coalesce(?, error), updated_at = ? "
    "WHERE run_id = ?"
)
# A finished run needs no worker again.
_UPDATE_FINISHED = (
    "UPDATE runs SET status = coalesce(?, status), error = coalesce(?, error), updated_at = ?, "
    "wake_at = NULL WHERE run_id = ?"
)
_EPOCH = "SELECT epoch FROM runs WHERE run_id = ?"
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (run_id, seq, state, buffers) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET "
    "seq = excluded.seq, state = excluded.state, buffers = excluded.buffers"
)
_RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = ?"
# Whether the run exists, and its last event's seq and hash (the chain continues from it): one
# statement, two primary-key seeks.
_LAST_SEQ = (
    "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1), "
    "(SELECT max(seq) FROM events WHERE run_id = ?1), "
    "(SELECT hash FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1)"
)
_GET_RUN = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?"
_READ_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data, ts, prev_hash, hash FROM events "
    "WHERE run_id = ? AND seq > ? ORDER BY seq"
)
_LOAD_SNAPSHOT = "SELECT seq, state, buffers FROM snapshots WHERE run_id = ?"


# Errors that fail one write of a batch and not the others: refusals (conflicts, unknown runs)
# and values SQLite cannot take (a NULL ts, an unsupported type, an out-of-range integer).
_WRITE_ERRORS = (StoreError, sqlite3.IntegrityError, sqlite3.ProgrammingError, OverflowError)

# -- writes ------------------------------------------------------------------------------


class _Write(ABC):
    """One write of a batch. ``apply`` runs inside the batch's transaction (and a savepoint);
    it raises one of ``_WRITE_ERRORS`` to fail this write alone."""

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


class _CreateRun(_Write):
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
        try:
            cur.execute(_INSERT_RUN, self.row)
        except sqlite3.IntegrityError as exc:
            if _taken(exc):
                raise ConflictError(f"run {self.run_id!r} already exists") from exc
            raise
        _insert_events(cur, self.run_id, self.events)
        if self.approvals:
            _sqlite_approvals.apply(cur, self.run_id, self.approvals)


class _Append(_Write):
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
            _insert_events(cur, self.run_id, [(*r, self.run_id, epoch) for r in self.events], True)
            if cur.rowcount != len(self.events):
                _check_epoch(cur, self.run_id, epoch)
        elif epoch is not None:
            _check_epoch(cur, self.run_id, epoch)
        elif self.events:
            _insert_events(cur, self.run_id, self.events)
        if self.status is not None or self.status_error is not None:
            cur.execute(
                _UPDATE_FINISHED if self.finished else _UPDATE_STATUS,
                (self.status, self.status_error, self.updated_at, self.run_id),
            )
        if self.snapshot is not None:
            cur.execute(_UPSERT_SNAPSHOT, self.snapshot)
        if self.approvals:  # in the transaction (and savepoint) of the events that say so
            _sqlite_approvals.apply(cur, self.run_id, self.approvals)


def _check_epoch(cur: sqlite3.Cursor, run_id: RunId, epoch: int) -> None:
    row = cur.execute(_EPOCH, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(run_id)
    if row[0] != epoch:
        raise LeaseLost(run_id, epoch, row[0])


def _insert_events(
    cur: sqlite3.Cursor, run_id: RunId, rows: list[tuple[Any, ...]], fenced: bool = False
) -> None:
    statement = _INSERT_FENCED if fenced else _INSERT_EVENT
    try:
        if len(rows) == 1:
            cur.execute(statement, rows[0])
        else:
            cur.executemany(statement, rows)
    except sqlite3.IntegrityError as exc:
        if not _taken(exc):
            raise
        raise ConflictError(
            f"run {run_id!r}: event seq {rows[0][1]}..{rows[-1][1]} is already taken "
            "(another writer appended first)"
        ) from exc


def _taken(exc: sqlite3.IntegrityError) -> bool:
    return getattr(exc, "sqlite_errorname", "") in (
        "SQLITE_CONSTRAINT_PRIMARYKEY",
        "SQLITE_CONSTRAINT_UNIQUE",
    )


def _apply(cur: sqlite3.Cursor, writes: list[_Write], *, careful: bool) -> set[RunId]:
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
        except _WRITE_ERRORS as exc:
            cur.execute("ROLLBACK TO w")
            write.error = _as_store_error(write, exc)
            if write.logged:
                failed.add(write.run_id)
        cur.execute("RELEASE w")
    return failed


def _as_store_error(write: _Write, exc: Exception) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    error = StoreError(f"run {write.run_id!r}: cannot store this write: {exc}")
    error.__cause__ = exc
    return error
