"""Who is running a run, and until when: owner ids, leases and their fencing, and when a run
that nobody holds next needs a worker.

On one machine (the embedded SQLite case) a run whose owner process is gone can be taken
over at once instead of waiting for its lease to expire."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.decisions import decided
from cadenza.runtime.outages import AppendGate, Outage, append_through
from cadenza.runtime.progress import Progress
from cadenza.store.base import RunRecord, Snapshot, Store

HOST = socket.gethostname()

#: Seconds a claim lasts without renewal; engines renew every third of it.
LEASE_SECONDS = 30.0


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    if not owner:
        return True
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != HOST:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def held_elsewhere(record: RunRecord, owner: str, now: float) -> bool:
    """The run's lease belongs to another engine that is alive and has not let it expire."""
    if record.owner in (None, owner) or owner_is_dead(record.owner):
        return False
    return (record.lease_until or 0) > now


class FencedStore:
    """The store as one lease holder sees it: every append carries the holder's lease epoch,
    so that once another worker has claimed the run, nothing more of this one is stored (the
    append raises :class:`~cadenza.store.base.LeaseLost`); an append the store could not take
    because it was away is retried until it is back (:func:`append_through`). Everything else
    is the store's."""

    __slots__ = ("_gate", "epoch", "outage", "store")

    def __init__(self, store: Store, epoch: int, outage: Outage | None = None) -> None:
        self.store = store
        self.epoch = epoch
        self.outage = outage or Outage()
        self._gate = AppendGate()

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
        epoch: int | None = None,
    ) -> None:
        fence = self.epoch if epoch is None else epoch
        store = self.store

        async def append() -> None:
            await store.append(
                run_id,
                events,
                status=status,
                error=error,
                snapshot=snapshot,
                durable=durable,
                epoch=fence,
            )

        async def read_after(seq: int) -> list[Event]:
            return await store.read_events(run_id, after_seq=seq)

        # While the store is away, retried until it is back (see runtime.outages).
        await append_through(self.outage, self._gate, run_id, events, append, read_after)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def approval_due(progress: Progress, now: float) -> bool:
    """A waiting run has something to do (at ``now``): an open request past its deadline, or
    a request already decided (its process died before going on)."""
    for path, request in progress.approvals.items():
        if path in progress.done:
            continue
        deadline = request.get("deadline")
        if decided(request) is not None or (deadline is not None and deadline <= now):
            return True
    return False


def next_wake(progress: Progress, now: float, *, suspended_at: int | None = None) -> float | None:
    """When a run that stopped executing (finished, paused, or waiting for a decision or a
    signal) next needs a worker by itself: the earliest approval deadline or timer, at once if
    a decision was recorded or a signal arrived after it suspended (at log position
    ``suspended_at``), ``None`` if only an outside event can move it on."""
    status = progress.status
    if status.terminal or status is WorkflowStatus.PAUSED:
        return None
    times: list[float] = []
    if status is WorkflowStatus.WAITING_APPROVAL:
        for path, request in progress.approvals.items():
            if path in progress.done:
                continue
            if decided(request) is not None:
                return now
            if request.get("deadline") is not None:
                times.append(float(request["deadline"]))
        return min(times, default=None)
    if suspended_at is not None and any(s["seq"] > suspended_at for s in progress.signals):
        return now  # a signal came in while the run was stopping: let it look again
    for table in (progress.timers, progress.retry_at):
        times.extend(t for path, t in table.items() if path not in progress.done)
    return min(times, default=None)
