"""The fold of a run's log: its state, the updates parallel branches hold until they join,
and what has already happened (so a resumed run skips it). Live runs and resumed runs use
the same fold, which is what makes resuming exact."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from cadenza.runtime.events import Event, EventType
from cadenza.runtime.state import Reducer, apply_update
from cadenza.runtime.status import WorkflowStatus
from cadenza.store.base import Snapshot

#: Suffix of the path of a step's compensation.
COMPENSATE = "!compensate"

#: The parts of a completion that replay needs (routes taken, loop exits, an agent's model
#: replies and tool observations with their usage, subtask plans and results); the rest is
#: history.
_REPLAYED = frozenset(
    {"route", "join", "iterations", "exit", "signal_seq", "reply", "usage", "result"}
)


@dataclass(slots=True)
class Progress:
    reducers: Mapping[str, Reducer]
    state: dict[str, Any] = field(default_factory=dict)
    buffers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    fanout: dict[str, list[Any]] = field(default_factory=dict)
    compensable: list[str] = field(default_factory=list)  # in completion order
    compensations: dict[str, bool] = field(default_factory=dict)  # path -> undone (or failed)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> request
    signals: list[dict[str, Any]] = field(default_factory=list)  # in arrival order
    status: WorkflowStatus = WorkflowStatus.INITIALIZING
    reason: str | None = None  # of the latest status change
    seq: int = 0

    def apply(self, event: Event) -> list[dict[str, Any]]:
        """Fold one event; return the updates it applied to its scope (in order)."""
        self.seq = event.seq
        kind = event.type
        applied: list[dict[str, Any]] = []
        if kind is EventType.STEP_COMPLETED:
            data = event.data
            update = data.get("update")
            if update:
                applied.append(update)
            for key in data.get("join", ()):
                applied.extend(self.buffers.pop(key, ()))
            for u in applied:
                self._apply(event.scope, u)
            self.done[event.path] = {k: v for k, v in data.items() if k in _REPLAYED}
            if data.get("compensable"):
                self.compensable.append(event.path)
        elif kind is EventType.LOOP_ITERATION:
            self.done[event.path] = dict(event.data)
        elif kind is EventType.STEP_SKIPPED and event.data.get("guard"):
            self.done[event.path] = {}  # a guard that did not hold: decided, not to be re-run
        elif kind is EventType.STEP_FAILED or kind is EventType.COMPENSATION_FAILED:
            self.attempts[event.path] = event.attempt
            if kind is EventType.COMPENSATION_FAILED and not event.data.get("retry"):
                self.compensations[event.path.removesuffix(COMPENSATE)] = False
            if "retry_at" in event.data:
                self.retry_at[event.path] = float(event.data["retry_at"])
        elif kind is EventType.TIMER_SET:
            self.timers[event.path] = float(event.data["fire_at"])
        elif kind is EventType.FANNED_OUT:
            self.fanout[event.path] = list(event.data["items"])
        elif kind is EventType.STATUS:
            self.status = WorkflowStatus(event.data["to"])
            self.reason = event.data.get("reason")
        elif kind is EventType.COMPENSATION_COMPLETED:
            self.compensations[event.path.removesuffix(COMPENSATE)] = True
            if event.data.get("update"):
                applied.append(event.data["update"])
                self._apply("", event.data["update"])
        elif kind is EventType.APPROVAL_REQUESTED:
            self.approvals[event.path] = {**event.data, "decisions": [], "since": event.ts}
        elif kind is EventType.APPROVAL_DECISION:
            self.approvals[event.path]["decisions"].append(dict(event.data))
        elif kind is EventType.APPROVAL_ESCALATED:
            request = self.approvals[event.path]
            request["approvers"] = list(event.data["approvers"])
            request["deadline"] = event.data.get("deadline")
            request["on_timeout"] = event.data.get("on_timeout", "reject")
        elif kind is EventType.SIGNAL:
            self.signals.append({**event.data, "seq": event.seq})
        elif kind is EventType.STATE_PATCHED:
            applied.append(event.data["update"])
            self._apply("", event.data["update"])
        elif kind is EventType.RUN_CREATED:
            self._apply("", event.data.get("input") or {})
        return applied

    def apply_all(self, events: Iterable[Event]) -> Progress:
        for event in events:
            self.apply(event)
        return self

    def _apply(self, scope: str, update: dict[str, Any]) -> None:
        if scope:
            self.buffers.setdefault(scope, []).append(update)
        else:
            apply_update(self.state, update, self.reducers)

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self, *, final: bool = False) -> Snapshot:
        """A detached copy of the progress (a JSON round trip: fast, and exactly what a
        durable store would give back). A ``final`` one, for a finished run, keeps only the
        state and status: nothing will resume from it."""
        if final:
            body: dict[str, Any] = {
                "values": self.state,
                "status": str(self.status),
                "reason": self.reason,
            }
            copied = pydantic_core.from_json(pydantic_core.to_json(body))
            return Snapshot(seq=self.seq, state=copied)
        body = {
            "values": self.state,
            "done": self.done,
            "attempts": self.attempts,
            "retry_at": self.retry_at,
            "timers": self.timers,
            "fanout": self.fanout,
            "compensable": self.compensable,
            "compensations": self.compensations,
            "approvals": self.approvals,
            "signals": self.signals,
            "status": str(self.status),
            "reason": self.reason,
        }
        copied = pydantic_core.from_json(pydantic_core.to_json([body, self.buffers]))
        return Snapshot(seq=self.seq, state=copied[0], buffers=copied[1])

    @classmethod
    def restore(cls, reducers: Mapping[str, Reducer], snapshot: Snapshot | None) -> Progress:
        if snapshot is None:
            return cls(reducers=reducers)
        body = snapshot.state
        return cls(
            reducers=reducers,
            state=dict(body["values"]),
            buffers={k: list(v) for k, v in snapshot.buffers.items()},
            done=dict(body.get("done", {})),
            attempts=dict(body.get("attempts", {})),
            retry_at=dict(body.get("retry_at", {})),
            timers=dict(body.get("timers", {})),
            fanout=dict(body.get("fanout", {})),
            compensable=list(body.get("compensable", [])),
            compensations=dict(body.get("compensations", {})),
            approvals=dict(body.get("approvals", {})),
            signals=list(body.get("signals", [])),
            status=WorkflowStatus(body["status"]),
            reason=body.get("reason"),
            seq=snapshot.seq,
        )
