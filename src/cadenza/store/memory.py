"""An honest in-memory store: the same contract as the durable stores, nothing survives the
process. Use it in tests of your own workflows."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pydantic_core

from cadenza.core.errors import ConflictError, RunNotFound
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import GENESIS
from cadenza.store import _approvals
from cadenza.store._memory_events import chain, check_sequence, encode
from cadenza.store._rows import command_json
from cadenza.store.base import (
    CLAIMABLE,
    DUE_NOW,
    Command,
    LeaseLost,
    PendingApproval,
    RunRecord,
    Snapshot,
    StoredApproval,
    StoredEvent,
    StoredLog,
    StoredRun,
    StoredSnapshot,
)
from cadenza.store.run_ids import CANDIDATES, check_prefix, pick_run_id
from cadenza.store.runlog import Op, RunHead, RunLog, check_loggable


class MemoryStore:
    """Events are kept as their JSON (taken when appended, so later changes to the objects a
    step returned cannot rewrite history) and chained into the audit hash chain when first
    read: the chain is the same as a durable store's, without its cost on every append."""

    def __init__(self) -> None:
        self._runs: dict[RunId, RunRecord] = {}
        self._events: dict[RunId, list[tuple[Event, bytes]]] = {}
        self._chained: dict[RunId, list[Event]] = {}
        self._snapshots: dict[RunId, tuple[int, bytes]] = {}
        self._commands: dict[int, Command] = {}
        # run -> path -> open request (only runs that have one)
        self._approvals: dict[RunId, dict[str, _approvals.Request]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def run_log(self) -> RunLog:
        """This store's run log (see :mod:`cadenza.store.runlog`): its operations need no
        connection (run them with :func:`~cadenza.store.runlog.complete`)."""
        return MemoryRunLog(self)

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        self._create(run, events)

    def _create(self, run: RunRecord, events: Sequence[Event]) -> None:
        if run.run_id in self._runs:
            raise ConflictError(f"run {run.run_id!r} already exists")
        check_sequence(run.run_id, 0, events)
        stored = encode(run.run_id, events)
        self._runs[run.run_id] = run
        self._events[run.run_id] = stored
        self._chained[run.run_id] = []
        self._approve(run.run_id, stored)

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
        self._append(run_id, events, status, error, snapshot, epoch)

    def _append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        epoch: int | None = None,
        now: float | None = None,
    ) -> None:
        log = self._events.get(run_id)
        if log is None:
            raise RunNotFound(run_id)
        run = self._runs[run_id]
        if epoch is not None and run.epoch != epoch:
            raise LeaseLost(run_id, epoch, run.epoch)
        check_sequence(run_id, len(log), events)
        encoded = encode(run_id, events)
        body = None
        if snapshot is not None:
            # Stored as JSON, like the durable stores: what cannot be stored fails here too.
            body = pydantic_core.to_json([snapshot.state, snapshot.buffers])
        log.extend(encoded)
        self._approve(run_id, encoded)
        if status is not None or error is not None:
            self._runs[run_id] = run.evolve(
                status=status or run.status,
                error=error if error is not None else run.error,
                updated_at=time.time() if now is None else now,
                wake_at=None if status is not None and status.terminal else run.wake_at,
            )
        if snapshot is not None and body is not None:
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

    async def resolve_run_id(self, prefix: str) -> RunId:
        check_prefix(prefix)
        if prefix in self._runs:
            return RunId(prefix)
        return pick_run_id(
            prefix, sorted(r for r in self._runs if r.startswith(prefix))[:CANDIDATES]
        )

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        return self._read(run_id, after_seq)

    def _read(self, run_id: RunId, after_seq: int = 0) -> list[Event]:
        log = self._events.get(run_id)
        if log is None:
            raise RunNotFound(run_id)
        chained = self._chained[run_id]
        if len(chained) < len(log):
            prev = chained[-1].hash if chained else GENESIS
            chained.extend(chain(run_id, prev, log[len(chained) :]))
        return chained[after_seq:]

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        if run_id not in self._runs:
            raise RunNotFound(run_id)
        stored = self._snapshots.get(run_id)
        if stored is None:
            return None
        state, buffers = pydantic_core.from_json(stored[1])
        return Snapshot(seq=stored[0], state=state, buffers=buffers)

    async def pending_approvals(
        self,
        *,
        approvers: Collection[str] | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 100,
    ) -> list[PendingApproval]:
        names = None if approvers is None else set(approvers)
        start = None if after is None else tuple(after)
        found: list[PendingApproval] = []
        for run_id, table in self._approvals.items():
            run = self._runs[run_id]
            if run.status is not WorkflowStatus.WAITING_APPROVAL:
                continue
            for path, request in table.items():
                if names is not None and names.isdisjoint(request.approvers):
                    continue
                if start is not None and (request.since, run_id, path) <= start:
                    continue
                pending = _approvals.listed(run_id, run.workflow, path, request)
                # a copy of what it shows, as a durable store decodes one per read
                show = pydantic_core.from_json(pydantic_core.to_json(request.show))
                found.append(replace(pending, show=show))
        found.sort(key=lambda p: p.cursor)
        return found[: max(limit, 0)]

    def _approve(self, run_id: RunId, stored: Sequence[tuple[Event, bytes]]) -> None:
        """Keep the run's pending approvals with the events just stored, read as stored
        (their data decoded from its JSON), as a durable store would."""
        watched = [
            replace(e, data=pydantic_core.from_json(blob))
            for e, blob in stored
            if e.type in _approvals.WATCHED
        ]
        if not watched:
            return
        table = self._approvals.setdefault(run_id, {})
        _approvals.apply(table, _approvals.changes(watched))
        if not table:
            del self._approvals[run_id]

    # -- the audit verifier's view ------------------------------------------------------------

    async def stored_run_ids(self) -> list[RunId]:
        runs = sorted(self._runs.values(), key=lambda r: r.created_at, reverse=True)
        return [r.run_id for r in runs]

    async def read_stored(self, run_id: RunId) -> StoredLog:
        """The rows a durable store would hold: data as the JSON kept when it was appended,
        hashes as chained when first read."""
        run = self._runs.get(run_id)
        if run is None:
            return StoredLog(run_id, None, [], None)
        chained = self._read(run_id)
        events = [
            StoredEvent(
                e.seq, str(e.type), e.path, e.scope, e.attempt, blob.decode(), e.ts,
                e.prev_hash, e.hash,
            )
            for e, (_, blob) in zip(chained, self._events[run_id], strict=True)
        ]  # fmt: skip
        row = StoredRun(
            run.workflow, run.version, str(run.status), pydantic_core.to_json(run.input).decode()
        )
        snapshot = None
        kept = self._snapshots.get(run_id)
        if kept is not None:
            state, buffers = pydantic_core.from_json(kept[1])
            snapshot = StoredSnapshot(
                kept[0],
                pydantic_core.to_json(state).decode(),
                pydantic_core.to_json(buffers).decode(),
            )
        approvals = [
            StoredApproval(
                path, list(r.approvers), r.quorum, list(r.approved_by), r.summary,
                pydantic_core.to_json(r.show).decode(), r.since, r.deadline,
            )
            for path, r in sorted(self._approvals.get(run_id, {}).items())
        ]  # fmt: skip
        return StoredLog(run_id, row, events, snapshot, approvals)

    # -- leases ----------------------------------------------------------------------------

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> int | None:
        run = await self.get_run(run_id)
        now = time.time()
        free = run.owner is None or run.owner == owner or (run.lease_until or 0) < now
        if not (free or steal):
            return None
        epoch = max(run.epoch, 1) if run.owner == owner else run.epoch + 1
        self._runs[run_id] = run.evolve(
            owner=owner, lease_until=lease_until, epoch=epoch, wake_at=_due(run, now)
        )
        return epoch

    async def claim_due(
        self,
        owner: str,
        *,
        lease_until: float,
        limit: int,
        workflows: Collection[tuple[str, str]] | None = None,
        queues: Collection[str] | None = None,
        dead_owners: Collection[str] = (),
        run_ids: Collection[RunId] | None = None,
    ) -> list[RunRecord]:
        now = time.time()
        wanted = None if workflows is None else set(workflows)
        candidates = (
            self._runs.values()
            if run_ids is None
            else [self._runs[i] for i in dict.fromkeys(run_ids) if i in self._runs]
        )
        due = sorted(
            (
                r
                for r in candidates
                if r.wake_at is not None
                and r.wake_at <= now
                and r.status in CLAIMABLE
                and (r.owner is None or (r.lease_until or 0) < now or r.owner in dead_owners)
                and (queues is None or r.queue in queues)
                and (wanted is None or (r.workflow, r.version) in wanted)
            ),
            key=lambda r: r.wake_at or 0.0,
        )
        claimed = []
        for run in due[: max(limit, 0)]:
            taken = run.evolve(owner=owner, lease_until=lease_until, epoch=run.epoch + 1)
            self._runs[run.run_id] = taken
            claimed.append(taken)
        return claimed

    async def renew(
        self, owner: str, leases: Mapping[RunId, int], *, lease_until: float
    ) -> set[RunId]:
        held = set()
        for run_id, epoch in leases.items():
            run = self._runs.get(run_id)
            if run is not None and run.owner == owner and run.epoch == epoch:
                self._runs[run_id] = run.evolve(lease_until=lease_until)
                held.add(run_id)
        return held

    async def release(self, run_id: RunId, owner: str, *, wake_at: float | None = DUE_NOW) -> None:
        run = await self.get_run(run_id)
        if run.owner != owner:
            return
        if run.status.terminal:
            wake_at = None
        elif any(c.run_id == run_id and c.done_at is None for c in self._commands.values()):
            wake_at = time.time()
        self._runs[run_id] = run.evolve(owner=None, lease_until=None, wake_at=wake_at)

    async def owners(self) -> list[str]:
        return sorted({r.owner for r in self._runs.values() if r.owner is not None})

    # -- commands --------------------------------------------------------------------------

    async def send_command(
        self, run_id: RunId, kind: str, data: Mapping[str, Any], *, actor: str = ""
    ) -> int:
        run = await self.get_run(run_id)
        stored = pydantic_core.from_json(command_json(run_id, kind, data))
        now = time.time()
        command_id = len(self._commands) + 1
        self._commands[command_id] = Command(command_id, run_id, kind, stored, actor, now)
        if not run.status.terminal:
            self._runs[run_id] = run.evolve(wake_at=_due(run, now))
        return command_id

    async def pending_commands(self, run_ids: Collection[RunId] | None = None) -> list[Command]:
        return [
            c
            for c in self._commands.values()
            if c.done_at is None and (run_ids is None or c.run_id in run_ids)
        ]

    async def finish_command(self, command_id: int, outcome: str) -> None:
        command = self._commands.get(command_id)
        if command is not None and command.done_at is None:
            self._commands[command_id] = replace(command, done_at=time.time(), outcome=outcome)

    async def get_command(self, command_id: int) -> Command | None:
        return self._commands.get(command_id)


class MemoryRunLog:
    """The memory store's run log: each operation does its work when it is run, yielding no
    statement. Its heads carry no hash (the store chains events when they are read)."""

    __slots__ = ("_store",)

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def head(self, run_id: RunId) -> Op[RunHead]:
        yield from ()
        run = self._store._runs.get(run_id)
        if run is None:
            return RunHead(run_id)
        log = self._store._events[run_id]
        ts = log[-1][0].ts if log else None
        return RunHead(run_id, True, run.workflow, run.version, run.status, len(log), "", ts)

    def create(self, run: RunRecord, events: Sequence[Event]) -> Op[RunHead | None]:
        yield from ()
        check_loggable(run.run_id, events)
        if run.run_id in self._store._runs:
            return None
        self._store._create(run, events)
        return (yield from self.head(run.run_id))

    def append(
        self,
        head: RunHead,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Op[RunHead]:
        yield from ()
        check_loggable(head.run_id, events)
        self._store._append(head.run_id, events, status, error, now=now)
        return (yield from self.head(head.run_id))

    def read(self, run_id: RunId, *, after_seq: int = 0) -> Op[list[Event]]:
        yield from ()
        return self._store._read(run_id, after_seq)


def _due(run: RunRecord, now: float) -> float | None:
    """The run's ``wake_at`` once it must be picked up by now (held, or sent a command)."""
    if run.status.terminal:
        return None
    return now if run.wake_at is None or run.wake_at > now else run.wake_at
