"""The run log (:class:`~cadenza.store.runlog.RunLog`) of the SQL stores: the row encoding and
the audit hash chain are the stores' own (:mod:`cadenza.store._rows`), and so are the
statements, each backend's from its store's statement module. Only how parameters are shaped
differs between SQLite and PostgreSQL."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from cadenza.core.errors import RunNotFound, StoreError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL, WorkflowStatus
from cadenza.observe.audit import GENESIS
from cadenza.store import _pg_sql as pg
from cadenza.store import _sqlite_sql as lite
from cadenza.store._rows import dumps, event_rows, events_from_rows, run_row
from cadenza.store.base import RunRecord
from cadenza.store.runlog import Mode, Op, RunHead, Stmt, check_loggable

__all__ = ["PostgresRunLog", "SQLiteRunLog"]


def _head(run_id: RunId, row: Sequence[Any] | None) -> RunHead:
    """A head from ``(workflow, version, status, seq, hash, ts)``; no row: no such run."""
    if row is None:
        return RunHead(run_id)
    workflow, version, status, seq, digest, ts = row
    return RunHead(
        run_id, True, workflow, version, WorkflowStatus(status), seq or 0, digest or GENESIS, ts
    )


class SQLRunLog(ABC):
    """What the SQL run logs share: encoding, checks, the order of statements."""

    insert_run: str
    insert_event: str
    read_events: str
    run_exists: str

    @abstractmethod
    def head(self, run_id: RunId) -> Op[RunHead]: ...

    @abstractmethod
    def _status(
        self, run_id: RunId, status: str | None, error: str | None, now: float, finished: bool
    ) -> Stmt: ...

    def create(self, run: RunRecord, events: Sequence[Event]) -> Op[RunHead | None]:
        run_id = run.run_id
        check_loggable(run_id, events)
        rows, digest = event_rows(run_id, 0, GENESIS, events)
        try:
            row = run_row(run, dumps(run.input))
        except ValueError as exc:
            raise StoreError(f"run {run_id!r}: input cannot be stored as JSON: {exc}") from exc
        if (yield Stmt(self.insert_run, row, Mode.EXEC)) != 1:
            return None
        if rows:
            yield Stmt(self.insert_event, rows, Mode.MANY, defer=True)
        last = events[-1].ts if events else None
        return RunHead(run_id, True, run.workflow, run.version, run.status, len(rows), digest, last)

    def append(
        self,
        head: RunHead,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Op[RunHead]:
        run_id = head.run_id
        if not head.exists:
            raise RunNotFound(run_id)
        check_loggable(run_id, events)
        rows, digest = event_rows(run_id, head.seq, head.hash or GENESIS, events)
        if rows:
            yield Stmt(self.insert_event, rows, Mode.MANY, defer=True)
        if status is not None or error is not None:
            when = time.time() if now is None else now
            new = None if status is None else str(status)
            yield self._status(run_id, new, error, when, status in TERMINAL)
        return RunHead(
            run_id,
            True,
            head.workflow,
            head.version,
            head.status if status is None else status,
            head.seq + len(rows),
            digest,
            events[-1].ts if events else head.ts,
        )

    def read(self, run_id: RunId, *, after_seq: int = 0) -> Op[list[Event]]:
        rows = yield Stmt(self.read_events, (run_id, after_seq), Mode.ALL)
        if not rows and (yield Stmt(self.run_exists, (run_id,), Mode.ONE)) is None:
            raise RunNotFound(run_id)
        return events_from_rows(run_id, rows)


class SQLiteRunLog(SQLRunLog):
    """The SQLite store's run log (its ``BEGIN IMMEDIATE`` serialises writers: no lock)."""

    insert_run = lite.INSERT_RUN
    insert_event = lite.INSERT_EVENT
    read_events = lite.READ_EVENTS
    run_exists = lite.RUN_EXISTS

    def head(self, run_id: RunId) -> Op[RunHead]:
        return _head(run_id, (yield Stmt(lite.HEAD, (run_id,), Mode.ONE)))

    def _status(
        self, run_id: RunId, status: str | None, error: str | None, now: float, finished: bool
    ) -> Stmt:
        sql = lite.UPDATE_FINISHED if finished else lite.UPDATE_STATUS
        return Stmt(sql, (status, error, now, run_id), Mode.EXEC, defer=True)


class PostgresRunLog(SQLRunLog):
    """The PostgreSQL store's run log: the head is read as its group commit reads it, the run's
    row locked first (a statement of its own, so that the next one reads the log as the
    previous holder of the lock left it)."""

    insert_run = pg.INSERT_RUN
    insert_event = pg.INSERT_EVENT
    read_events = pg.READ_EVENTS
    run_exists = pg.RUN_EXISTS

    def head(self, run_id: RunId) -> Op[RunHead]:
        locked = yield Stmt(pg.LOCK_RUNS, ([run_id],), Mode.ONE)
        if locked is None:
            return RunHead(run_id)
        _, _, workflow, version, status = locked
        _, seq, digest, ts = yield Stmt(pg.LAST_EVENTS, ([run_id],), Mode.ONE)
        return _head(run_id, (workflow, version, status, seq, digest, ts))

    def _status(
        self, run_id: RunId, status: str | None, error: str | None, now: float, finished: bool
    ) -> Stmt:
        params = ([run_id], [status], [error], [now], [finished])
        return Stmt(pg.UPDATE_STATUSES, params, Mode.EXEC, defer=True)
