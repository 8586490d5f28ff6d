"""A store's run log as operations that a caller runs in a transaction of its own.

The engine writes runs through :class:`~cadenza.store.base.Store`. A writer that keeps runs of
its own in a store, each change in one transaction with rows of its own (the LangGraph
checkpointers store a checkpoint and the event that records it together), needs less, and
needs it at the connection: read a run's head (locking the run where the database can), create
a run with its first events, append events with a status change, read the events back.
:class:`RunLog` is that interface. Every store has one (``store.run_log``), written with the
store's own statements and row encoding (:mod:`cadenza.store._rows`), so a run written through
it is a run like any other: the same rows, the same audit hash chain, listed, shown and
verified by the same tools.

An operation is a generator (:data:`Op`) that yields :class:`Stmt` (a statement, its
parameters and what to send back) and returns its result: it holds the logic and no I/O, so
one implementation serves sync and async callers. :func:`drive` runs one on a DB-API cursor
(``sqlite3`` or psycopg), :func:`adrive` on psycopg's async cursor. The memory store's
operations yield nothing; :func:`complete` runs them.

Status changes are the caller's to check (the engine checks a native run's; the checkpointers
check a thread's against its own lifecycle). The run log keeps no approval requests: events
that open or decide one go through :meth:`Store.append <cadenza.store.base.Store.append>`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, Protocol, TypeVar

from cadenza.core.errors import StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store._approvals import WATCHED
from cadenza.store.base import RunRecord

__all__ = [
    "Mode",
    "Op",
    "RunHead",
    "RunLog",
    "Stmt",
    "adrive",
    "check_loggable",
    "complete",
    "drive",
    "sequence",
]

T = TypeVar("T")

# The events that change pending approvals, which the run log does not keep. A terminal status
# closes a run's requests too, but a run written through the run log has none to close.
_APPROVAL_EVENTS = WATCHED - {EventType.STATUS}


class Mode(IntEnum):
    EXEC = 0  # send back the row count
    MANY = 1  # executemany; send back None
    ONE = 2  # send back one row (or None)
    ALL = 3  # send back every row


class Stmt(NamedTuple):
    sql: str
    params: Any
    mode: Mode
    #: an INSERT or UPDATE (``EXEC`` or ``MANY``) whose result the operation does not use: a
    #: caller may run it later, with others of its kind, in the same transaction
    defer: bool = False


Op = Generator[Stmt, Any, T]


def drive(cur: Any, op: Op[T]) -> T:
    """Run ``op`` on a DB-API cursor (``sqlite3`` or psycopg)."""
    result: Any = None
    try:
        while True:
            sql, params, mode, _ = op.send(result)
            if mode is Mode.MANY:
                cur.executemany(sql, params)
                result = None
                continue
            cur.execute(sql, params)
            if mode is Mode.EXEC:
                result = cur.rowcount
            elif mode is Mode.ONE:
                result = cur.fetchone()
            else:
                result = cur.fetchall()
    except StopIteration as done:
        value: T = done.value
        return value


async def adrive(cur: Any, op: Op[T]) -> T:
    """Run ``op`` on psycopg's async cursor."""
    result: Any = None
    try:
        while True:
            sql, params, mode, _ = op.send(result)
            if mode is Mode.MANY:
                await cur.executemany(sql, params)
                result = None
                continue
            await cur.execute(sql, params)
            if mode is Mode.EXEC:
                result = cur.rowcount
            elif mode is Mode.ONE:
                result = await cur.fetchone()
            else:
                result = await cur.fetchall()
    except StopIteration as done:
        value: T = done.value
        return value


def complete(op: Op[T]) -> T:
    """Run an operation that needs no statement (the memory store's)."""
    try:
        stmt = op.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    op.close()
    raise StoreError(f"this operation needs a database connection: {stmt.sql[:60]!r}")


def sequence(ops: Sequence[Op[Any]]) -> Op[list[Any]]:
    """One operation that runs ``ops`` in order (in one transaction) and returns their results."""
    results = []
    for op in ops:
        results.append((yield from op))
    return results


@dataclass(slots=True, frozen=True)
class RunHead:
    """Where a run's log ends: what appending to it needs, and what the run is.

    ``exists`` is false for a run the store does not hold (then the rest is empty). ``hash``
    is the last event's audit hash where the store keeps it with the event (the durable
    stores; the memory store chains its events when they are read, and leaves it empty);
    ``ts`` is the last event's time (``None``: no event)."""

    run_id: RunId
    exists: bool = False
    workflow: str = ""
    version: str = ""
    status: WorkflowStatus | None = None
    seq: int = 0
    hash: str = ""
    ts: float | None = None


class RunLog(Protocol):
    """One store's run log, as operations run in the caller's transaction (see the module)."""

    def head(self, run_id: RunId) -> Op[RunHead]:
        """Lock the run until the transaction ends, where the database can (PostgreSQL: its
        row; SQLite's ``BEGIN IMMEDIATE`` has locked every writer out already), and read its
        head. A run the lock did not find reads as not existing, even if another writer
        commits it meanwhile: creating it then finds the id taken."""
        ...

    def create(self, run: RunRecord, events: Sequence[Event]) -> Op[RunHead | None]:
        """Create ``run`` with its first events (numbered from 1); ``None`` when the id is
        taken (nothing is written)."""
        ...

    def append(
        self,
        head: RunHead,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Op[RunHead]:
        """Append ``events`` (numbered after ``head.seq``) to the log ``head`` ends, and move
        the run to ``status`` (``None``: unchanged) with ``error`` (``None``: unchanged; ``""``
        clears it), its ``updated_at`` being ``now``. Returns the new head. Events that do not
        continue the log raise :class:`~cadenza.core.errors.ConflictError` (nothing of them is
        kept); values that are not JSON raise :class:`StoreError`."""
        ...

    def read(self, run_id: RunId, *, after_seq: int = 0) -> Op[list[Event]]:
        """The run's events after ``after_seq``, as stored (with their hashes);
        :class:`~cadenza.core.errors.RunNotFound` for an unknown run."""
        ...


def check_loggable(run_id: RunId, events: Sequence[Event]) -> None:
    """Refuse events that open, decide or close approval requests: the run log does not keep
    the pending-approvals table they change."""
    for event in events:
        if event.type in _APPROVAL_EVENTS:
            raise StoreError(
                f"run {run_id!r}: a {event.type} event changes pending approvals, which the run "
                "log does not keep; append it with Store.append"
            )
