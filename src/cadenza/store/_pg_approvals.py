"""The PostgreSQL store's pending approvals table (schema version 5): applying the changes of
:mod:`cadenza.store._approvals` in the group commit's transaction, listing a page, and
filling the table from the logs when the migration creates it.

Every change is applied by statements that need no answer (a quorum is checked in the
``DELETE`` that closes the request), so they join the group commit's pipeline without a
round trip of their own; the finished runs of consecutive appends share one statement."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from pydantic_core import from_json, to_json

from cadenza.core.errors import StoreError
from cadenza.core.ids import RunId
from cadenza.store import _pg_sql as q
from cadenza.store._approvals import (
    WATCHED,
    Approve,
    Change,
    Close,
    Escalate,
    Finish,
    Open,
    distinct,
    merge,
)
from cadenza.store._approvals import changes as approval_changes
from cadenza.store._rows import events_from_rows
from cadenza.store.base import PendingApproval, StoredApproval

log = logging.getLogger("cadenza.store.postgres")

#: The cursor before every request.
START = (float("-inf"), "", "")


async def apply(
    conn: psycopg.AsyncConnection[Any], changes: Sequence[tuple[RunId, Sequence[Change]]]
) -> None:
    """Apply the changes of the appends of a transaction, in their order."""
    cur = conn.cursor()
    finished: list[RunId] = []
    for run_id, run_changes in changes:
        for change in run_changes:
            if isinstance(change, Finish):
                finished.append(run_id)
                continue
            if finished:
                await cur.execute(q.APPROVALS_FINISH, (finished,))
                finished = []
            await _apply(cur, run_id, change)
    if finished:
        await cur.execute(q.APPROVALS_FINISH, (finished,))


async def _apply(cur: psycopg.AsyncCursor[Any], run_id: RunId, change: Change) -> None:
    if isinstance(change, Open):
        r, path = change.request, change.path
        await cur.execute(q.APPROVERS_DROP, (run_id, path))  # of a request it replaces
        await cur.execute(
            q.APPROVAL_OPEN,
            (
                run_id, path, r.approvers, r.quorum, r.approved_by, r.summary,
                to_json(r.show).decode(), r.since, r.deadline,
            ),
        )  # fmt: skip
        await cur.execute(q.APPROVERS_ADD, (distinct(r.approvers), r.since, run_id, path))
    elif isinstance(change, Approve):
        await cur.execute(q.APPROVAL_COMPLETE, (run_id, change.path))
        await cur.execute(q.APPROVAL_ADD, (change.actor, run_id, change.path))
    elif isinstance(change, Close):
        await cur.execute(q.APPROVAL_CLOSE, (run_id, change.path))
    elif isinstance(change, Escalate):
        where = (run_id, change.path)
        await cur.execute(q.APPROVAL_ESCALATE, (change.approvers, change.deadline, *where))
        await cur.execute(q.APPROVERS_DROP, where)
        await cur.execute(q.APPROVERS_ESCALATED, (distinct(change.approvers), *where))


async def pending(
    conn: psycopg.AsyncConnection[Any],
    approvers: Collection[str] | None,
    after: tuple[float, str, str] | None,
    limit: int,
) -> list[PendingApproval]:
    """A page of the listing (see :meth:`cadenza.store.base.Store.pending_approvals`): one
    walk of an index per name, merged."""
    if limit <= 0:
        return []
    start = START if after is None else after
    if approvers is None:
        return await _walk(conn, q.APPROVALS_PAGE, {}, start, limit)
    pages = [
        await _walk(conn, q.APPROVALS_PAGE_FOR, {"name": name}, start, limit)
        for name in sorted(set(approvers))
    ]
    return merge(pages, limit)


async def _walk(
    conn: psycopg.AsyncConnection[Any],
    query: str,
    params: dict[str, Any],
    after: tuple[float, str, str],
    limit: int,
) -> list[PendingApproval]:
    """Up to ``limit`` requests of waiting runs from ``query``, reading on past the requests
    of runs that do not wait (rare: a run between its request and its status change)."""
    out: list[PendingApproval] = []
    while True:
        since, run_id, path = after
        args = {**params, "since": since, "run": run_id, "path": path, "limit": limit}
        rows = await (await conn.execute(query, args)).fetchall()
        out += [_listed(row) for row in rows if row[10]]
        if len(out) >= limit or len(rows) < limit:
            return out[:limit]
        last = rows[-1]
        after = (last[8], last[0], last[2])


def _listed(row: tuple[Any, ...]) -> PendingApproval:
    """A row of ``APPROVALS_PAGE(_FOR)`` (its last column, whether the run waits, aside)."""
    run_id, workflow, path, approvers, quorum, approved_by, summary, show, since, deadline = row[
        :10
    ]
    return PendingApproval(
        run_id=RunId(run_id),
        workflow=workflow,
        step=path,
        approvers=tuple(approvers),
        quorum=quorum,
        approved_by=tuple(approved_by),
        summary=summary,
        show=from_json(show),
        since=since,
        deadline=deadline,
    )


async def stored(conn: psycopg.AsyncConnection[Any], run_id: RunId) -> list[StoredApproval]:
    """The run's rows as stored (for the audit verifier), by path."""
    rows = await (await conn.execute(q.APPROVALS_STORED, (run_id,))).fetchall()
    return [StoredApproval(*row) for row in rows]


async def backfill(conn: psycopg.AsyncConnection[Any]) -> int:
    """Fill the table from the logs of the runs that have not finished (the migration that
    creates it calls this in its transaction); returns how many runs were read. A run whose
    approval events do not decode is skipped with a warning: ``cadenza audit verify`` reports
    it, and its requests are not listed until its log is repaired."""
    run_ids = [RunId(r) for (r,) in await (await conn.execute(q.APPROVALS_UNFINISHED)).fetchall()]
    types = [str(t) for t in WATCHED]
    for run_id in run_ids:
        rows = await (await conn.execute(q.APPROVALS_EVENTS, (run_id, types))).fetchall()
        if not rows:
            continue
        try:
            run_changes = approval_changes(events_from_rows(run_id, rows))
        except (StoreError, ValueError, TypeError) as exc:
            log.warning("pending approvals of run %r not filled in: %s", run_id, exc)
            continue
        await apply(conn, [(run_id, run_changes)])
    await conn.execute(q.APPROVALS_ANALYZE)
    return len(run_ids)
