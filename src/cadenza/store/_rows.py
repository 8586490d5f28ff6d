"""How the durable stores turn events and runs into rows and back: JSON text for values, the
sequence check, and the audit hash of exactly what a row holds. Shared by SQLite and
PostgreSQL so both keep the same chain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pydantic_core import from_json, to_json

from cadenza.core.errors import ConflictError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import encode_stored, link
from cadenza.store.base import RunRecord

#: The columns of a run row, in the order :func:`run_row` and :func:`run_from_row` use.
RUN_COLUMNS = (
    "run_id, workflow, version, status, target, input, error, created_at, updated_at, "
    "deadline, owner, lease_until, parent_run_id, queue, epoch, wake_at"
)


def dumps(value: dict[str, Any]) -> str:
    return to_json(value).decode() if value else "{}"


def command_json(run_id: RunId, kind: str, data: Any) -> str:
    """A command's data as JSON text; what cannot be encoded is refused before anything is sent."""
    try:
        return to_json(dict(data)).decode()
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"run {run_id!r}: the {kind} data cannot be stored as JSON: {exc}"
        ) from exc


def event_rows(
    run_id: RunId, last: int, prev_hash: str, events: Sequence[Event]
) -> tuple[list[tuple[Any, ...]], str]:
    """Check that ``events`` continue a log ending at ``last`` (whose last hash is
    ``prev_hash``) and encode them as rows; returns the rows and the new last hash.

    The audit hash is taken over the data decoded from the JSON text stored, so it is the hash
    of exactly what the row holds (and what ``read_events`` returns)."""
    rows: list[tuple[Any, ...]] = []
    expected = last
    for event in events:
        expected += 1
        if event.run_id != run_id:
            raise StoreError(f"event {event.seq} belongs to run {event.run_id!r}, not {run_id!r}")
        if event.seq != expected:
            raise ConflictError(
                f"run {run_id!r}: expected event seq {expected}, got {event.seq} "
                "(another writer appended first)"
            )
        data = event.data
        type_ = str(event.type)
        try:
            encoded = to_json(data).decode() if data else "{}"
        except ValueError as exc:
            raise StoreError(
                f"run {run_id!r}: data of event {event.seq} ({event.type}) cannot be stored "
                f"as JSON: {exc}"
            ) from exc
        try:
            body = encode_stored(
                run_id, expected, type_, event.path, event.scope, event.attempt,
                from_json(encoded) if data else None, event.ts,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:  # a field SQLite could not take either
            raise StoreError(
                f"run {run_id!r}: cannot store event {event.seq} ({event.type}): {exc}"
            ) from exc
        digest = link(prev_hash, body)
        rows.append(
            (run_id, expected, type_, event.path, event.scope, event.attempt,
             encoded, event.ts, prev_hash, digest)
        )  # fmt: skip
        prev_hash = digest
    return rows, prev_hash


def run_row(run: RunRecord, input_json: str) -> tuple[Any, ...]:
    """The values of ``RUN_COLUMNS`` for a new run."""
    return (
        run.run_id, run.workflow, run.version, str(run.status), run.target, input_json,
        run.error, run.created_at, run.updated_at, run.deadline, run.owner, run.lease_until,
        run.parent_run_id, run.queue, run.epoch, run.wake_at,
    )  # fmt: skip


class DamagedRow(StoreError):
    """A stored row that does not decode: edited, or written by something else."""

    def __init__(self, run_id: Any, what: str, exc: Exception) -> None:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        super().__init__(
            f"run {run_id!r}: {what} in the store does not decode ({detail}); "
            f"`cadenza audit verify {run_id}` checks it"
        )


def run_from_row(row: tuple[Any, ...]) -> RunRecord:
    """A run from the values of ``RUN_COLUMNS`` (in that order); a row that does not decode
    is a :class:`DamagedRow`, not a traceback."""
    try:
        return _run_from_row(row)
    except (ValueError, TypeError, IndexError) as exc:
        raise DamagedRow(row[0] if row else "?", "its row", exc) from None


def events_from_rows(run_id: RunId, rows: Sequence[Sequence[Any]]) -> list[Event]:
    """Events from ``(seq, type, path, scope, attempt, data, ts, prev_hash, hash)`` rows."""
    out = []
    for row in rows:
        try:
            seq, type_, path, scope, attempt, data, ts, prev, h = row
            out.append(
                Event(
                    run_id,
                    seq,
                    EventType(type_),
                    path,
                    scope,
                    attempt,
                    from_json(data),
                    ts,
                    prev,
                    h,
                )
            )
        except (ValueError, TypeError) as exc:
            raise DamagedRow(run_id, f"event {row[0]!r}", exc) from None
    return out


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    parent = row[12]
    return RunRecord(
        run_id=RunId(row[0]),
        workflow=row[1],
        version=row[2],
        status=WorkflowStatus(row[3]),
        target=row[4],
        input=from_json(row[5]),
        error=row[6],
        created_at=row[7],
        updated_at=row[8],
        deadline=row[9],
        owner=row[10],
        lease_until=row[11],
        parent_run_id=RunId(parent) if parent is not None else None,
        queue=row[13],
        epoch=row[14],
        wake_at=row[15],
    )


def run_filter(
    status: Collection[WorkflowStatus] | None, workflow: str | None, limit: int, *, mark: str
) -> tuple[str, list[Any]] | None:
    """The ``WHERE`` clause (with a trailing space, or empty) and parameters that
    ``list_runs`` filters by, with ``mark`` as the driver's placeholder; the limit is the last
    parameter. ``None`` when nothing can match (no statuses, or a limit below 1)."""
    clauses: list[str] = []
    params: list[Any] = []
    if status is not None:
        wanted = [str(s) for s in status]
        if not wanted:
            return None
        clauses.append(f"status IN ({', '.join([mark] * len(wanted))})")
        params.extend(wanted)
    if workflow is not None:
        clauses.append(f"workflow = {mark}")
        params.append(workflow)
    if limit <= 0:
        return None
    params.append(limit)
    return (f"WHERE {' AND '.join(clauses)} " if clauses else ""), params
