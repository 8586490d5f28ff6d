"""How a LangGraph thread shows in Cadenza's store: as a run whose log records its checkpoints.

The run's id is the thread id. It is created by the thread's first checkpoint, its workflow
named by the checkpoint metadata (``workflow``, else ``graph_id``, else ``langgraph``) and its
version :data:`RUN_VERSION`, which marks it as recorded by a checkpointer: Cadenza's engine
never executes it (its ``wake_at`` stays unset, so no worker finds it due).

Every checkpoint appends a ``step_completed`` event (path ``step N``, or ``<namespace>/step N``
in a subgraph) whose data names the checkpoint, its parent and the nodes due next; the events
carry the audit hash chain like any other. The run's status follows the root namespace's last
checkpoint: ``RUNNING`` while nodes are due, ``COMPLETED`` when none are; an ``interrupt()``
(an ``__interrupt__`` write) makes it ``WAITING_APPROVAL`` and a task's error ``FAILED``, until
the next checkpoint. Each change of status is a ``status`` event, checked against the
thread's lifecycle (:mod:`._lifecycle`), as are deletions of checkpoints (the run's log is
kept: it is the audit trail).

The events are written through the store's run log (:mod:`cadenza.store.runlog`), so they are
stored as the store stores any run's; :class:`Log` builds them and writes them there, and keeps
what it wrote for the observers to be told once the transaction has committed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, TASKS

from cadenza.core.errors import StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint._lifecycle import Cause, check_thread_transition
from cadenza.store.base import RunRecord
from cadenza.store.runlog import Op, RunHead, RunLog

__all__ = [
    "RUN_VERSION",
    "Head",
    "Log",
    "Written",
    "latest_status",
    "next_version",
    "next_nodes",
    "thread_status",
    "workflow_name",
    "writes_status",
]

#: ``RunRecord.version`` of the runs these checkpointers record.
RUN_VERSION = "langgraph"

_DEFAULT_WORKFLOW = "langgraph"
_WORKFLOW_KEYS = ("workflow", "graph_id")
_START = "__start__"
_BRANCH = "branch:to:"


def next_nodes(checkpoint: Mapping[str, Any]) -> list[str]:
    """The nodes a checkpoint has due, as LangGraph decides: those whose trigger channel
    (``branch:to:<node>``, or ``__start__``) holds a value of a version the node has not seen,
    and the targets of pending sends."""
    values = checkpoint.get("channel_values") or {}
    versions = checkpoint.get("channel_versions") or {}
    seen_by_node = checkpoint.get("versions_seen") or {}
    due: set[str] = set()
    for channel in values:
        if channel == _START:
            node = _START
        elif channel.startswith(_BRANCH):
            node = channel[len(_BRANCH) :]
        else:
            continue
        version = versions.get(channel)
        seen = (seen_by_node.get(node) or {}).get(channel)
        if version is not None and (seen is None or _newer(version, seen)):
            due.add(node)
    for send in values.get(TASKS) or ():
        due.add(str(getattr(send, "node", TASKS)))
    return sorted(due)


def _newer(version: Any, seen: Any) -> bool:
    try:
        return bool(version > seen)
    except TypeError:  # versions of two kinds: compare their counters
        return _counter(version) > _counter(seen)


def next_version(current: Any) -> str:
    """The channel version after ``current``: a counter, and a random suffix so that versions
    written on two branches of a thread (after time travel) never collide.

    The counter is hex behind one hex digit that gives its length (7: ``"17"``, 300:
    ``"312c"``), so versions sort as text in counter order while staying short: a checkpoint
    stores every channel's version and every node's versions seen, so their length is most
    of its row."""
    count = int(_counter(current)) if current is not None else 0
    digits = f"{count + 1:x}"
    return f"{len(digits):x}{digits}.{random.getrandbits(32):08x}"


def _counter(version: Any) -> float:
    """A version's counter: an ``int`` itself, :func:`next_version`'s, or a decimal one
    (other savers' zero-padded versions)."""
    if isinstance(version, int | float):
        return version
    head = str(version).split(".", 1)[0]
    if head and head[0] != "0" and _is_hex(head) and int(head[0], 16) == len(head) - 1:
        return int(head[1:], 16)
    try:
        return float(head or 0)
    except ValueError:
        return 0


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def thread_status(due: Sequence[str]) -> WorkflowStatus:
    """``RUNNING`` while nodes are due, ``COMPLETED`` when nothing is left to run."""
    return WorkflowStatus.RUNNING if due else WorkflowStatus.COMPLETED


def workflow_name(metadata: Mapping[str, Any]) -> str:
    for key in _WORKFLOW_KEYS:
        name = metadata.get(key)
        if isinstance(name, str) and name:
            return name
    return _DEFAULT_WORKFLOW


_WAITING = "interrupted: waiting for input"


def writes_status(writes: Sequence[tuple[str, Any]]) -> tuple[WorkflowStatus, str] | None:
    """The status special writes put a thread in (an interrupt, a task's error), with why."""
    for channel, value in writes:
        if channel == INTERRUPT:
            return WorkflowStatus.WAITING_APPROVAL, _WAITING
        if channel == ERROR:
            return WorkflowStatus.FAILED, f"{type(value).__name__}: {value}"
    return None


def latest_status(due: Sequence[str], special: Sequence[str]) -> tuple[WorkflowStatus, str | None]:
    """A thread's status from its latest root checkpoint: what it has ``due`` and the channels
    of the special writes stored for it (an interrupt: waiting, until a later checkpoint)."""
    if INTERRUPT in special:
        return WorkflowStatus.WAITING_APPROVAL, _WAITING
    if ERROR in special:
        return WorkflowStatus.FAILED, "a task failed"
    return thread_status(due), None


@dataclass(slots=True, frozen=True)
class Head:
    """What appending to a thread's run needs: the run's head in the store, and about one
    root checkpoint the channels of its special writes and whether it is stored."""

    run: RunHead
    special: tuple[str, ...] = ()  # the channels of the checkpoint's special writes
    stored: bool = False  # whether the checkpoint asked about is stored

    @property
    def ours(self) -> bool:
        """Whether the run is a thread recorded by these checkpointers."""
        return self.run.exists and self.run.version == RUN_VERSION


#: What a written log leaves for observers: the run's workflow and the events stored.
Written = tuple[str, Sequence[Event]]


class Log:
    """The events (and the run, for a new one) to write to one thread's run."""

    def __init__(self, head: Head, *, now: float | None = None) -> None:
        run = head.run
        if run.exists and run.version != RUN_VERSION:
            raise StoreError(
                f"thread {run.run_id!r}: Cadenza already has a run with this id that is not a "
                f"LangGraph thread (its version is {run.version!r}); use another thread_id"
            )
        self.run_id = run.run_id
        self.head = head
        self.now = time.time() if now is None else now
        self.events: list[Event] = []
        self.status = self._stored = run.status
        self.error: str | None = None
        self.workflow = run.workflow
        self.record: RunRecord | None = None
        self.written = run  # the run's head once the log is written

    def create(self, metadata: Mapping[str, Any], status: WorkflowStatus) -> None:
        """Start the run (when it does not exist yet) in ``status``."""
        if self.head.run.exists or self.record is not None:
            return
        self.workflow = workflow = workflow_name(metadata)
        self.record = RunRecord(
            run_id=self.run_id,
            workflow=workflow,
            version=RUN_VERSION,
            status=status,
            created_at=self.now,
            updated_at=self.now,
        )
        self.status = self._stored = status
        self._event(
            EventType.RUN_CREATED, "", {"workflow": workflow, "version": RUN_VERSION, "input": {}}
        )

    def checkpoint(
        self,
        checkpoint_id: str,
        checkpoint_ns: str,
        parent_id: str | None,
        metadata: Mapping[str, Any],
        due: Sequence[str],
        *,
        special: Sequence[str] = (),
        copied_from: str | None = None,
    ) -> None:
        """Record one checkpoint (``due``: its :func:`next_nodes`; ``special``: the channels
        of special writes already stored for it); in the root namespace it also sets the
        run's status."""
        status, reason = latest_status(due, special) if not checkpoint_ns else (None, None)
        self.create(metadata, status or WorkflowStatus.RUNNING)
        step = metadata.get("step")
        source = metadata.get("source")
        data: dict[str, Any] = {
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": parent_id,
            "source": source,
            "step": step,
            "next": list(due),
        }
        if checkpoint_ns:
            data["checkpoint_ns"] = checkpoint_ns
        else:
            data["update"] = {"checkpoint_id": checkpoint_id, "step": step, "next": list(due)}
        if copied_from is not None:
            data["copied_from"] = copied_from
        elif source == "loop" and self.last_ts is not None:
            data["started_at"] = self.last_ts
        path = f"step {step}" if not checkpoint_ns else f"{checkpoint_ns}/step {step}"
        self._event(EventType.STEP_COMPLETED, path, data)
        if status is not None:
            cause = Cause.CHECKPOINT if copied_from is None else Cause.COPY
            self.set_status(status, reason, cause)

    def set_status(
        self, status: WorkflowStatus, reason: str | None, cause: Cause, *, always: bool = False
    ) -> None:
        """Move the run to ``status`` for ``cause`` with a ``status`` event (``always``: even
        when it is already there, to record why, e.g. a deletion). The change is checked
        against the thread's lifecycle (:mod:`._lifecycle`)."""
        current = self.status
        if current is None or (current == status and not always):
            return
        check_thread_transition(self.run_id, current, status, cause)
        data: dict[str, Any] = {"from": str(current), "to": str(status)}
        if reason:
            data["reason"] = reason
        self._event(EventType.STATUS, "", data)
        self.status = status
        # a failed thread shows why; any other has no current error (its log keeps them)
        self.error = (reason or "") if status == WorkflowStatus.FAILED else ""

    @property
    def last_ts(self) -> float | None:
        return self.events[-1].ts if self.events else self.head.run.ts

    def _event(self, type_: EventType, path: str, data: dict[str, Any]) -> None:
        seq = self.head.run.seq + len(self.events) + 1
        self.events.append(Event(self.run_id, seq, type_, path, "", 0, data, self.now))

    def write(self, run_log: RunLog) -> Op[bool]:
        """Write the log through the store's run log (creating the run first if it is new);
        ``False`` when another writer created the run meanwhile (nothing was written: read
        the head again)."""
        if self.record is not None:
            record = self.record
            if self.status is not None and self.status != record.status:
                record = record.evolve(status=self.status, error=self.error or None)
            created = yield from run_log.create(record, self.events)
            if created is None:
                return False
            self.written = created
            return True
        if not self.events and self.status == self._stored:
            return True
        changed = self.status != self._stored
        self.written = yield from run_log.append(
            self.head.run,
            self.events,
            status=self.status if changed else None,
            error=self.error if changed else None,
            now=self.now,
        )
        return True

    def published(self) -> Written:
        """What observers are told once the log's transaction has committed."""
        return self.workflow, self.events
