"""The fold of a run's log: its state, the updates parallel branches hold until they join,
and what has already happened (so a resumed run skips it). Live runs and resumed runs use
the same fold, which is what makes resuming exact.

A finished loop iteration is folded away: what was recorded inside it (``lp#3/...``: step
results, attempts, timers, fan-outs, approvals, inner loops) is dropped and the loop keeps
only a cursor, its latest finished iteration. Nothing runs in a finished iteration again, so
none of it is needed to resume, and a run's progress (and each snapshot of it) stays the size
of its live state however many iterations it made. Two things survive an iteration because
later steps need them: the steps that declared a compensation (a rollback undoes them) and,
by their absence, the signals the iteration consumed (they are removed from ``signals`` so
that no later wait takes them again)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from cadenza.core.events import Event, EventType
from cadenza.core.state import Reducer, apply_update
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.iterations import Inside, iteration_record
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
    # loop path -> its latest finished iteration: {"iteration": n, "exit": bool}
    loops: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: WorkflowStatus = WorkflowStatus.INITIALIZING
    reason: str | None = None  # of the latest status change
    seq: int = 0
    # which recorded paths lie inside each open iteration (derived: rebuilt on restore)
    inside: Inside = field(default_factory=Inside, repr=False, compare=False)

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
            path = event.path
            self.done[path] = {k: v for k, v in data.items() if k in _REPLAYED}
            if data.get("compensable"):
                self.compensable.append(path)
            self.loops.pop(path, None)  # a finished loop needs no cursor
            self.inside.track(path)
        elif kind is EventType.LOOP_ITERATION:
            self._finish_iteration(event.path, event.data)
        elif kind is EventType.STEP_SKIPPED and event.data.get("guard"):
            self.done[event.path] = {}  # a guard that did not hold: decided, not to be re-run
            self.inside.track(event.path)
        elif kind is EventType.STEP_FAILED or kind is EventType.COMPENSATION_FAILED:
            self.attempts[event.path] = event.attempt
            if kind is EventType.COMPENSATION_FAILED and not event.data.get("retry"):
                self.compensations[event.path.removesuffix(COMPENSATE)] = False
            if "retry_at" in event.data:
                self.retry_at[event.path] = float(event.data["retry_at"])
            if kind is EventType.STEP_FAILED:
                self.inside.track(event.path)
        elif kind is EventType.TIMER_SET:
            self.timers[event.path] = float(event.data["fire_at"])
            self.inside.track(event.path)
        elif kind is EventType.FANNED_OUT:
            self.fanout[event.path] = list(event.data["items"])
            self.inside.track(event.path)
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
            self.inside.track(event.path)
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

    # -- loop iterations -------------------------------------------------------------------

    def _finish_iteration(self, ipath: str, data: Mapping[str, Any]) -> None:
        """Iteration ``ipath`` (``"lp#3"``) finished: move the loop's cursor to it and forget
        what was recorded inside it (see the module docstring for what survives)."""
        loop, _, number = ipath.rpartition("#")
        if loop not in self.done:  # (a snapshot taken before folding may hold a finished loop)
            self.loops[loop] = {
                "iteration": int(data.get("iteration", number)),
                "exit": bool(data.get("exit")),
            }
            self.inside.track(loop)
        self.done.pop(ipath, None)  # an iteration record of a snapshot taken before folding
        consumed: set[int] = set()
        for path in self.inside.pop(ipath):
            record = self.done.pop(path, None)
            if record is not None and "signal_seq" in record:
                consumed.add(record["signal_seq"])
            self.attempts.pop(path, None)
            self.retry_at.pop(path, None)
            self.timers.pop(path, None)
            self.fanout.pop(path, None)
            self.approvals.pop(path, None)
            self.loops.pop(path, None)
        if consumed:
            self.signals = [s for s in self.signals if s["seq"] not in consumed]

    def _reindex(self) -> None:
        """Rebuild the derived index of what lies inside open iterations (after a restore),
        and fold the iterations a snapshot taken before folding existed still holds."""
        for table in (
            self.done,
            self.attempts,
            self.retry_at,
            self.timers,
            self.fanout,
            self.approvals,
            self.loops,
        ):
            for path in table:
                self.inside.track(path)
        # In completion order (a dict keeps it), as the live fold met them: an inner loop's
        # iterations before the outer iteration that holds them.
        for path, record in list(self.done.items()):
            if path in self.done and iteration_record(path, record):
                self._finish_iteration(path, record)

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
            "loops": self.loops,
            "status": str(self.status),
            "reason": self.reason,
        }
        copied = pydantic_core.from_json(pydantic_core.to_json([body, self.buffers]))
        return Snapshot(seq=self.seq, state=copied[0], buffers=copied[1])

    @classmethod
    def restore(cls, reducers: Mapping[str, Reducer], snapshot: Snapshot | None) -> Progress:
        """The progress a snapshot holds. A snapshot stored before iterations were folded
        (no ``loops``; every iteration's records in ``done``) is folded here, so a run started
        by an older version resumes exactly as if this version had run it."""
        if snapshot is None:
            return cls(reducers=reducers)
        body = snapshot.state
        progress = cls(
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
            loops=dict(body.get("loops", {})),
            status=WorkflowStatus(body["status"]),
            reason=body.get("reason"),
            seq=snapshot.seq,
        )
        progress._reindex()
        return progress
