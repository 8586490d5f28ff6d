"""The SQLite store's pending approvals table (schema version 5): applying the changes of
:mod:`cadenza.store._approvals` inside the write's transaction, listing a page, and filling
the table from the logs when the migration creates it.

A request's approvers are rows of ``approval_approvers`` keyed ``(approver, since, run_id,
path)``: listing the requests a user may decide walks that key once per name (the user's and
each role's), in listing order, and stops at the page's end; the pages of each name are then
merged. Every statement runs on the event-loop thread inside the batch's transaction (or the
migration's), like the rest of the store's writes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from pydantic_core import from_json, to_json

from cadenza.core.errors import StoreError
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL, WorkflowStatus
from cadenza.store._approvals import (
    WATCHED,
    Approve,
    Change,
    Close,
    Escalate,
    Finish,
    Open,
    Request,
    changes,
    completes,
    distinct,
    merge,
)
from cadenza.store._rows import events_from_rows
from cadenza.store.base import PendingApproval, StoredApproval

log = logging.getLogger("cadenza.store.sqlite")

_OPEN = (
    "INSERT OR REPLACE INTO pending_approvals (run_id, path, approvers, quorum, approved_by, "
    "summary, show, since, deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ADD_APPROVER = "INSERT INTO approval_approvers (approver, since, run_id, path) VALUES (?, ?, ?, ?)"
_DROP = "DELETE FROM pending_approvals WHERE run_id = ? AND path = ?"
_DROP_APPROVERS = "DELETE FROM approval_approvers WHERE run_id = ? AND path = ?"
_APPROVALS_OF = "SELECT approved_by, quorum FROM pending_approvals WHERE run_id = ? AND path = ?"
_SET_APPROVED = "UPDATE pending_approvals SET approved_by = ? WHERE run_id = ? AND path = ?"
_SINCE = "SELECT since FROM pending_approvals WHERE run_id = ? AND path = ?"
_ESCALATE = "UPDATE pending_approvals SET approvers = ?, deadline = ? WHERE run_id = ? AND path = ?"
_FINISH = "DELETE FROM pending_approvals WHERE run_id = ?"
_FINISH_APPROVERS = "DELETE FROM approval_approvers WHERE run_id = ?"

# Listing: a request's run must wait for a decision, and gives its workflow; each is looked up
# by the run's key, row by row, in the order of the index that drives the query. (A join would
# let SQLite, lacking statistics, scan every run instead: to sort them, or to build a Bloom
# filter of them.)
_COLUMNS = (
    "p.run_id, (SELECT workflow FROM runs WHERE run_id = p.run_id), p.path, p.approvers, "
    "p.quorum, p.approved_by, p.summary, p.show, p.since, p.deadline"
)
_WAITING = (
    "EXISTS (SELECT 1 FROM runs r WHERE r.run_id = p.run_id "
    f"AND r.status = '{WorkflowStatus.WAITING_APPROVAL}')"
)
# Oldest first after a cursor (since, run_id, path): the index on (since, run_id, path).
_LIST = (
    f"SELECT {_COLUMNS} FROM pending_approvals p "
    f"WHERE (p.since, p.run_id, p.path) > (?, ?, ?) AND {_WAITING} "
    "ORDER BY p.since, p.run_id, p.path LIMIT ?"
)
# The same for the requests that name one approver: a range of approval_approvers' key.
_LIST_FOR = (
    f"SELECT {_COLUMNS} FROM approval_approvers a "
    "CROSS JOIN pending_approvals p ON p.run_id = a.run_id AND p.path = a.path "
    f"WHERE a.approver = ? AND (a.since, a.run_id, a.path) > (?, ?, ?) AND {_WAITING} "
    "ORDER BY a.since, a.run_id, a.path LIMIT ?"
)
# Runs that may have open requests, and the events that open, change or close them.
_UNFINISHED = (
    f"SELECT run_id FROM runs WHERE status NOT IN ({', '.join(repr(str(s)) for s in TERMINAL)})"
)
_WATCHED_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data, ts, prev_hash, hash FROM events "
    f"WHERE run_id = ? AND type IN ({', '.join(repr(str(t)) for t in WATCHED)}) ORDER BY seq"
)
STORED = (
    "SELECT path, approvers, quorum, approved_by, summary, show, since, deadline "
    "FROM pending_approvals WHERE run_id = ? ORDER BY path"
)

#: The cursor before every request.
START = (float("-inf"), "", "")


def apply(cur: sqlite3.Cursor, run_id: RunId, run_changes: Sequence[Change]) -> None:
    """Apply one run's changes in the current transaction (the one storing their events)."""
    for change in run_changes:
        if isinstance(change, Open):
            cur.execute(_DROP_APPROVERS, (run_id, change.path))  # of a request it replaces
            _insert(cur, run_id, change.path, change.request)
        elif isinstance(change, Approve):
            row = cur.execute(_APPROVALS_OF, (run_id, change.path)).fetchone()
            if row is None:
                continue
            try:
                approved_by = [*_list(row[0]), change.actor]
            except ValueError:  # edited by hand: the log (which holds these events) says
                rebuild(cur, run_id)
                return
            if completes(approved_by, row[1]):
                _drop(cur, run_id, change.path)
            else:
                cur.execute(_SET_APPROVED, (_json(approved_by), run_id, change.path))
        elif isinstance(change, Close):
            _drop(cur, run_id, change.path)
        elif isinstance(change, Escalate):
            row = cur.execute(_SINCE, (run_id, change.path)).fetchone()
            if row is None:
                continue
            cur.execute(_ESCALATE, (_json(change.approvers), change.deadline, run_id, change.path))
            cur.execute(_DROP_APPROVERS, (run_id, change.path))
            cur.executemany(
                _ADD_APPROVER,
                [(name, row[0], run_id, change.path) for name in distinct(change.approvers)],
            )
        elif isinstance(change, Finish):
            cur.execute(_FINISH, (run_id,))
            if cur.rowcount:
                cur.execute(_FINISH_APPROVERS, (run_id,))


def _insert(cur: sqlite3.Cursor, run_id: RunId, path: str, request: Request) -> None:
    cur.execute(
        _OPEN,
        (
            run_id, path, _json(request.approvers), request.quorum, _json(request.approved_by),
            request.summary, _json(request.show), request.since, request.deadline,
        ),
    )  # fmt: skip
    cur.executemany(
        _ADD_APPROVER, [(name, request.since, run_id, path) for name in distinct(request.approvers)]
    )


def _drop(cur: sqlite3.Cursor, run_id: RunId, path: str) -> None:
    cur.execute(_DROP, (run_id, path))
    if cur.rowcount:
        cur.execute(_DROP_APPROVERS, (run_id, path))


def _json(value: Any) -> str:
    return to_json(value).decode()


def _list(text: Any) -> list[Any]:
    value = from_json(text)
    if not isinstance(value, list):
        raise ValueError(f"not a JSON list: {text!r}")
    return value


def rebuild(cur: sqlite3.Cursor, run_id: RunId) -> None:
    """Make the run's rows the fold of its log again (what the migration does for every
    unfinished run, and a write does for a row it cannot read). A log that does not decode
    leaves the run without rows and a warning: ``cadenza audit verify`` reports it."""
    cur.execute(_FINISH, (run_id,))
    cur.execute(_FINISH_APPROVERS, (run_id,))
    rows = cur.execute(_WATCHED_EVENTS, (run_id,)).fetchall()
    if not rows:
        return
    try:
        run_changes = changes(events_from_rows(run_id, rows))
    except (StoreError, ValueError, TypeError) as exc:
        log.warning("pending approvals of run %r left out: %s", run_id, exc)
        return
    apply(cur, run_id, run_changes)


def pending(
    cur: sqlite3.Cursor,
    approvers: Collection[str] | None,
    after: tuple[float, str, str] | None,
    limit: int,
) -> list[PendingApproval]:
    """A page of the listing (see :meth:`cadenza.store.base.Store.pending_approvals`)."""
    if limit <= 0:
        return []
    since, run_id, path = START if after is None else after
    if approvers is None:
        return [_listed(row) for row in cur.execute(_LIST, (since, run_id, path, limit))]
    pages = [
        [_listed(row) for row in cur.execute(_LIST_FOR, (name, since, run_id, path, limit))]
        for name in sorted(set(approvers))
    ]
    return merge(pages, limit)


def _listed(row: tuple[Any, ...]) -> PendingApproval:
    run_id, workflow, path, approvers, quorum, approved_by, summary, show, since, deadline = row
    return PendingApproval(
        run_id=RunId(run_id),
        workflow=workflow,
        step=path,
        approvers=tuple(from_json(approvers)),
        quorum=quorum,
        approved_by=tuple(from_json(approved_by)),
        summary=summary,
        show=from_json(show),
        since=since,
        deadline=deadline,
    )


def stored(conn: sqlite3.Connection, run_id: RunId) -> list[StoredApproval]:
    """The run's rows as stored (for the audit verifier), by path."""
    return [StoredApproval(*row) for row in conn.execute(STORED, (run_id,))]


def backfill(conn: sqlite3.Connection) -> int:
    """Fill the table from the logs of the runs that have not finished (the migration that
    creates it calls this in its transaction); returns how many runs were read. A run whose
    approval events do not decode is left out (see :func:`rebuild`): its requests are not
    listed until its log is repaired."""
    cur = conn.cursor()
    run_ids = [RunId(r) for (r,) in cur.execute(_UNFINISHED).fetchall() if isinstance(r, str)]
    for run_id in run_ids:
        rebuild(cur, run_id)
    return len(run_ids)
