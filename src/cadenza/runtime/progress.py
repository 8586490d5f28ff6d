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

#: The parts of a completion that replay needs (routes taken, loop exits); the rest is history.
_REPLAYED = frozenset({"route", "join", "iterations", "exit"})


@dataclass(slots=True)
class Progress:
    reducers: Mapping[str, Reducer]
    state: dict[str, Any] = field(default_factory=dict)
    buffers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    fanout: dict[str, list[Any]] = field(default_factory=dict)
    status: WorkflowStatus = WorkflowStatus.INITIALIZING
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
        elif kind is EventType.LOOP_ITERATION:
            self.done[event.path] = dict(event.data)
        elif kind is EventType.STEP_FAILED:
            self.attempts[event.path] = event.attempt
        elif kind is EventType.TIMER_SET:
            self.timers[event.path] = float(event.data["fire_at"])
        elif kind is EventType.FANNED_OUT:
            self.fanout[event.path] = list(event.data["items"])
        elif kind is EventType.STATUS:
            self.status = WorkflowStatus(event.data["to"])
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

    def snapshot(self) -> Snapshot:
        """A detached copy of the progress (a JSON round trip: fast, and exactly what a
        durable store would give back)."""
        body = {
            "values": self.state,
            "done": self.done,
            "attempts": self.attempts,
            "timers": self.timers,
            "fanout": self.fanout,
            "status": str(self.status),
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
            done=dict(body["done"]),
            attempts=dict(body["attempts"]),
            timers=dict(body["timers"]),
            fanout=dict(body["fanout"]),
            status=WorkflowStatus(body["status"]),
            seq=snapshot.seq,
        )
