"""The event model. Everything that happens to a run is an :class:`Event` in its log; status,
timelines, metrics and the audit trail are derived from the log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cadenza.core.ids import RunId


class EventType(StrEnum):
    RUN_CREATED = "run_created"  # data: workflow, version, input[, allowed_users]
    STATUS = "status"  # data: from, to, reason?
    STEP_STARTED = "step_started"  # live only: seq 0, for observers, never stored
    # data: update?, route?, join?, started_at; an agent's sub-steps: reply (the message
    # added to the conversation), usage, model, cost? (model calls), tool (tool calls);
    # orchestrators: result (the plan, a subtask's outcome)
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"  # data: error, error_type, retry (bool), started_at
    STEP_SKIPPED = "step_skipped"  # data: reason
    TIMER_SET = "timer_set"  # data: fire_at (epoch seconds)
    LOOP_ITERATION = "loop_iteration"  # data: iteration, exit (bool)
    FANNED_OUT = "fanned_out"  # data: items (the list a map step fans out over)
    COMPENSATION_COMPLETED = "compensation_completed"  # path: "<step path>!compensate"
    COMPENSATION_FAILED = "compensation_failed"  # data: error, error_type, retry, retry_at?
    STATE_PATCHED = "state_patched"  # data: update (set by an operator, e.g. a fork's --set)
    BREAKER = "breaker"  # a circuit breaker changed state: breaker, from, to, reason, failure_rate
    APPROVAL_REQUESTED = "approval_requested"  # approvers, quorum, summary, show, deadline
    APPROVAL_DECISION = "approval_decision"  # actor, approve (bool), comment, auto?
    # actor, approve, reason: a decision refused (not allowed, or not possible now); may
    # follow any status, a terminal one included
    APPROVAL_REFUSED = "approval_refused"
    APPROVAL_ESCALATED = "approval_escalated"  # approvers (the new ones), deadline
    SIGNAL = "signal"  # name, payload, actor
    # actor, command, reason: a control command the actor may not give (any status)
    REFUSED = "refused"


@dataclass(slots=True, frozen=True)
class Event:
    """One entry of a run's log.

    ``seq`` numbers a run's events from 1 with no gaps; the store refuses a taken ``seq``
    (optimistic concurrency). ``path`` names the step instance (``"drafts[1]/write"``,
    ``"review#3/edit"``); ``scope`` is the parallel/map branch whose state the update goes to
    (``""`` for the run's own state).

    ``prev_hash`` and ``hash`` chain the run's events into a tamper-evident audit trail (see
    :mod:`cadenza.observe.audit`). The store assigns them when it appends the event and returns
    them from ``read_events``; an event not stored yet has ``""``. They take no part in equality
    (an event read back equals the one appended) and are left out of ``repr``."""

    run_id: RunId
    seq: int
    type: EventType
    path: str = ""
    scope: str = ""
    attempt: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    prev_hash: str = field(default="", compare=False, repr=False)
    hash: str = field(default="", compare=False, repr=False)

    def to_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "type": str(self.type),
            "path": self.path,
            "scope": self.scope,
            "attempt": self.attempt,
            "data": self.data,
            "ts": self.ts,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(
            run_id=RunId(row["run_id"]),
            seq=int(row["seq"]),
            type=EventType(row["type"]),
            path=row.get("path") or "",
            scope=row.get("scope") or "",
            attempt=int(row.get("attempt") or 0),
            data=dict(row.get("data") or {}),
            ts=float(row["ts"]),
            prev_hash=row.get("prev_hash") or "",
            hash=row.get("hash") or "",
        )
