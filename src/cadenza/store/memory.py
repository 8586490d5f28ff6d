"""An honest in-memory store: the same contract as the durable stores, nothing survives the
process. Use it in tests of your own workflows."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import pydantic_core

from cadenza.errors import ConflictError, RunNotFound, StoreError
from cadenza.ids import RunId
from cadenza.observe.audit import GENESIS, encode_stored, link
from cadenza.runtime.events import Event
from cadenza.runtime.status import WorkflowStatus
from cadenza.store.base import RunRecord, Snapshot


class MemoryStore:
    """Events are kept as their JSON (taken when appended, so later changes to the objects a
    step returned cannot rewrite history) and chained into the audit hash chain when first
    read: the chain is the same as a durable store's, without its cost on every append."""

    def __init__(self) -> None:
        self._runs: dict[RunId, RunRecord] = {}
        self._events: dict[RunId, list[tuple[Event, bytes]]] = {}
        self._chained: dict[RunId, list[Event]] = {}
        self._snapshots: dict[RunId, tuple[int, bytes]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        if run.run_id in self._runs:
            raise ConflictError(f"run {run.run_id!r} already exists")
        _check_sequence(run.run_id, 0, events)
        stored = _encode(run.run_id, events)
        self._runs[run.run_id] = run
        self._events[run.run_id] = stored
        self._chained[run.run_id] = []

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
    ) -> None:
        log = self._events.get(run_id)
        if log is None:
            raise RunNotFound(run_id)
        _check_sequence(run_id, len(log), events)
        log.extend(_encode(run_id, events))
        if status is not None or error is not None:
            run = self._runs[run_id]
            self._runs[run_id] = run.evolve(
                status=status or run.status,
                error=error if error is not None else run.error,
                updated_at=time.time(),
            )
        if snapshot is not None:
            # Stored as JSON, like the durable stores: what cannot be stored fails here too.
            body = pydantic_core.to_json([snapshot.state, snapshot.buffers])
            self._snapshots[run_id] = (snapshot.seq, body)

    async def get_run(self, run_id: RunId) -> RunRecord:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    async def list_runs(
        self,
        *,
        status: Collection[WorkflowStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (status is None or r.status in status)
            and (workflow is None or r.workflow == workflow)
        ]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return runs[:limit]

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        log = self._events.get(run_id)
        if log is None:
            raise RunNotFound(run_id)
        chained = self._chained[run_id]
        if len(chained) < len(log):
            prev = chained[-1].hash if chained else GENESIS
            chained.extend(_chain(run_id, prev, log[len(chained) :]))
        return chained[after_seq:]

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        if run_id not in self._runs:
            raise RunNotFound(run_id)
        stored = self._snapshots.get(run_id)
        if stored is None:
            return None
        state, buffers = pydantic_core.from_json(stored[1])
        return Snapshot(seq=stored[0], state=state, buffers=buffers)

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> bool:
        run = await self.get_run(run_id)
        now = time.time()
        free = run.owner is None or run.owner == owner or (run.lease_until or 0) < now
        if not (free or steal):
            return False
        self._runs[run_id] = run.evolve(owner=owner, lease_until=lease_until)
        return True

    async def release(self, run_id: RunId, owner: str) -> None:
        run = await self.get_run(run_id)
        if run.owner == owner:
            self._runs[run_id] = run.evolve(owner=None, lease_until=None)


def _encode(run_id: RunId, events: Sequence[Event]) -> list[tuple[Event, bytes]]:
    """Each event with its data as JSON; what cannot be stored is refused here, before
    anything is kept."""
    out: list[tuple[Event, bytes]] = []
    for e in events:
        try:
            out.append((e, pydantic_core.to_json(e.data)))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"run {run_id!r}: cannot store event {e.seq} ({e.type}): {exc}"
            ) from exc
    return out


def _chain(run_id: RunId, prev_hash: str, stored: Sequence[tuple[Event, bytes]]) -> list[Event]:
    """The stored events as read back: data decoded from its JSON, hashes chained to
    ``prev_hash`` exactly as a durable store computes them."""
    chained: list[Event] = []
    for e, blob in stored:
        data = pydantic_core.from_json(blob)
        body = encode_stored(run_id, e.seq, str(e.type), e.path, e.scope, e.attempt, data, e.ts)
        digest = link(prev_hash, body)
        chained.append(
            Event(run_id, e.seq, e.type, e.path, e.scope, e.attempt, data, e.ts, prev_hash, digest)
        )
        prev_hash = digest
    return chained


def _check_sequence(run_id: RunId, last: int, events: Sequence[Event]) -> None:
    for offset, event in enumerate(events, start=1):
        if event.run_id != run_id:
            raise StoreError(f"event {event.seq} belongs to run {event.run_id!r}, not {run_id!r}")
        if event.seq != last + offset:
            raise ConflictError(
                f"run {run_id!r}: expected event seq {last + offset}, got {event.seq} "
                "(another writer appended first)"
            )
