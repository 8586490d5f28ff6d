"""A run's timeline, derived from its log: one row per step instance with its outcome,
attempts and duration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cadenza.core.events import Event, EventType


@dataclass(slots=True)
class TimelineRow:
    path: str
    status: str  # running, completed, failed, retrying, skipped, waiting, compensated
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    route: list[str] | None = None
    decided_by: str | None = None  # approval steps: who approved (or rejected)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


_NOT_STEPS = frozenset(
    {
        EventType.BREAKER,
        EventType.STATE_PATCHED,
        EventType.STATUS,
        EventType.SIGNAL,
        EventType.APPROVAL_REFUSED,
        EventType.REFUSED,
    }
)


def timeline(events: Iterable[Event]) -> list[TimelineRow]:
    rows: dict[str, TimelineRow] = {}
    for event in events:
        if not event.path or event.type in _NOT_STEPS:
            continue
        row = rows.get(event.path)
        if row is None:
            row = rows[event.path] = TimelineRow(event.path, "running")
        kind = event.type
        if kind is EventType.STEP_STARTED:
            row.attempts = max(row.attempts, event.attempt)
            row.status = "running"
            if row.started_at is None:
                row.started_at = event.ts
        elif kind is EventType.STEP_COMPLETED:
            row.status = "completed"
            row.finished_at = event.ts
            row.attempts = max(row.attempts, event.attempt)
            started = event.data.get("started_at")
            if row.started_at is None and started is not None:
                row.started_at = float(started)
            if "route" in event.data:
                row.route = list(event.data["route"])
            if "approved_by" in event.data:
                row.decided_by = f"approved by {event.data['approved_by']}"
            if "rejected_by" in event.data:
                row.decided_by = f"rejected by {event.data['rejected_by']}"
        elif kind is EventType.STEP_FAILED:
            row.attempts = max(row.attempts, event.attempt)
            row.error = event.data.get("error")
            row.status = "retrying" if event.data.get("retry") else "failed"
            row.finished_at = event.ts
            if row.started_at is None and event.data.get("started_at") is not None:
                row.started_at = float(event.data["started_at"])
        elif kind is EventType.STEP_SKIPPED:
            row.status = "skipped"
        elif kind is EventType.APPROVAL_REQUESTED:
            row.status = "waiting"
            row.started_at = event.ts
        elif kind is EventType.APPROVAL_DECISION and not event.data.get("approve"):
            row.decided_by = f"rejected by {event.data.get('actor')}"
        elif kind is EventType.TIMER_SET:
            row.status = "waiting"
            row.started_at = event.ts
        elif kind is EventType.FANNED_OUT:
            row.started_at = event.ts
        elif kind is EventType.LOOP_ITERATION:
            row.status = "completed"
            row.finished_at = event.ts
        elif kind is EventType.COMPENSATION_COMPLETED:
            row.status = "compensated"
            row.attempts = event.attempt
            row.finished_at = event.ts
        elif kind is EventType.COMPENSATION_FAILED:
            row.status = "retrying" if event.data.get("retry") else "failed"
            row.attempts = event.attempt
            row.error = event.data.get("error")
            row.finished_at = event.ts
    return list(rows.values())
