"""The storage contract. The runtime knows persistence only through :class:`Store`; every
implementation passes the suite in ``tests/conformance/``."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from cadenza.ids import RunId
from cadenza.runtime.events import Event
from cadenza.runtime.status import WorkflowStatus


@dataclass(slots=True, frozen=True)
class RunRecord:
    """The materialised row of a run: what listing and claiming need without reading the log.

    ``target`` is where the definition can be imported from (``pkg.mod:attr`` or
    ``/path/file.py:attr``), so another process can resume the run; ``version`` pins it to
    the definition hash it started with."""

    run_id: RunId
    workflow: str
    version: str
    status: WorkflowStatus = WorkflowStatus.INITIALIZING
    target: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    deadline: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    parent_run_id: RunId | None = None

    def evolve(self, **changes: Any) -> RunRecord:
        return replace(self, **changes)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """The folded run state as of event ``seq``; loading starts here and replays what follows."""

    seq: int
    state: dict[str, Any]
    buffers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """Persistence for runs, their event logs and snapshots.

    Rules every implementation keeps:

    - ``append`` is atomic: all of its events, the status change and the snapshot are stored
      together or not at all. Events must continue the log exactly (``seq`` = last + 1, no
      gaps); a taken or skipped ``seq`` raises :class:`ConflictError` and stores nothing.
    - Appends are applied in the order they were called (concurrent runs may share one
      transaction: group commit). An append that is cancelled may or may not be stored: the
      caller re-reads the log.
    - Values are JSON: what ``pydantic_core.to_json`` cannot encode is refused with
      :class:`StoreError`; models come back as dicts.
    - ``append(..., durable=False)`` may hold the events back and write them with the next
      durable append of the same store (they are informational, e.g. ``step_started``).
    - Runs are listed newest first.
    - Leases compare ``lease_until`` with the clock of the process that writes; machines that
      share a store need synchronised clocks.
    - ``get_run``, ``read_events``, ``load_snapshot``, ``claim`` and ``release`` raise
      :class:`RunNotFound` for an unknown run.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None: ...

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
    ) -> None: ...

    async def get_run(self, run_id: RunId) -> RunRecord: ...

    async def list_runs(
        self,
        *,
        status: Collection[WorkflowStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]: ...

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]: ...

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None: ...

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> bool:
        """Take (or renew) the run's lease for ``owner``. Succeeds when the run is unowned, owned
        by ``owner``, its lease has expired, or ``steal`` is set (the caller knows the owner is
        dead). Returns whether ``owner`` now holds the lease."""
        ...

    async def release(self, run_id: RunId, owner: str) -> None: ...
