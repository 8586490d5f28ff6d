"""The PostgreSQL store's group commit: appends from many runs share one transaction.

Appends queue up in *lanes* (a run always uses the same lane, so its appends keep their order);
each lane writes what has queued while its previous transaction was in flight, in one
transaction of two round trips: lock the batch's runs (in run order, so batches of different
processes cannot deadlock) and read their last events; then insert every event, update the
statuses and snapshots, and commit. The checks are made per append, in Python, between the
two: an unknown run, a stale lease epoch (:class:`LeaseLost`) or a misnumbered event fails
that append alone, and the later appends of that run in the batch (they no longer follow its
log). A statement PostgreSQL refuses (a NUL byte in a path, say) fails the whole transaction;
the batch is then written again one append per transaction, so the refusal stays with its
append. A caller's awaitable resolves after the commit, so each step is durable before its
successors start, while hundreds of concurrent runs share one commit (and one WAL flush).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg

from cadenza.core.errors import ConflictError, RunNotFound, StoreError, StoreUnavailable
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.observe.audit import GENESIS
from cadenza.store import _pg_approvals
from cadenza.store._approvals import Change
from cadenza.store._pg_sql import (
    INSERT_EVENT,
    INSERT_RUN,
    LAST_EVENTS,
    LOCK_RUNS,
    NOTIFY,
    UPDATE_STATUSES,
    UPSERT_SNAPSHOT,
)
from cadenza.store._rows import event_rows
from cadenza.store.base import LeaseLost

log = logging.getLogger("cadenza.store.postgres")

# Errors after which the same batch is simply tried again.
_RETRY = ("40P01", "40001")  # deadlock detected, serialization failure

Connect = Callable[[str], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class Append:
    """One queued append: its events (numbered by the caller), status change, pre-encoded
    snapshot row, lease epoch and what its events change in pending approvals; ``future`` is
    ``None`` for held (``durable=False``) ones."""

    __slots__ = (
        "approvals", "epoch", "error", "events", "finished", "future", "run_id", "snapshot",
        "status",
    )  # fmt: skip

    def __init__(
        self,
        run_id: RunId,
        events: list[Event],
        status: str | None,
        error: str | None,
        finished: bool,
        snapshot: tuple[Any, ...] | None,
        epoch: int | None,
        approvals: Sequence[Change] = (),
    ) -> None:
        self.run_id = run_id
        self.events = events
        self.status = status
        self.error = error
        self.finished = finished
        self.snapshot = snapshot
        self.epoch = epoch
        self.approvals = approvals
        self.future: asyncio.Future[None] | None = None


class Create:
    """One queued new run: its row (``run_row``), its first events as rows, whether it
    waits for a worker (then the batch notifies the store's channel), and what its events
    change in pending approvals (a re-drive or fork copies open requests)."""

    __slots__ = ("approvals", "events", "future", "queued", "row", "run_id")

    def __init__(
        self,
        run_id: RunId,
        row: tuple[Any, ...],
        events: list[tuple[Any, ...]],
        queued: bool,
        approvals: Sequence[Change] = (),
    ) -> None:
        self.run_id = run_id
        self.row = row
        self.events = events
        self.queued = queued
        self.approvals = approvals
        self.future: asyncio.Future[None] | None = None


Write = Append | Create


class _Lane:
    __slots__ = ("queue", "task")

    def __init__(self) -> None:
        self.queue: list[Write] = []
        self.task: asyncio.Task[None] | None = None


class GroupCommit:
    """The batching writer of one store: ``lanes`` transactions may be in flight at once."""

    def __init__(
        self,
        connect: Connect,
        channel: Callable[[], str],
        *,
        lanes: int = 2,
        max_batch: int = 1000,
    ) -> None:
        if lanes < 1:
            raise StoreError(f"writers must be at least 1, got {lanes}")
        self._connect = connect
        self._channel = channel
        self._lanes = [_Lane() for _ in range(lanes)]
        self._max_batch = max_batch

    def submit(self, write: Write, *, durable: bool) -> asyncio.Future[None] | None:
        lane = self._lanes[hash(write.run_id) % len(self._lanes)]
        lane.queue.append(write)
        if not durable:
            return None  # written with the next batch of its lane, or by flush()
        loop = asyncio.get_running_loop()
        write.future = future = loop.create_future()
        if lane.task is None:
            lane.task = loop.create_task(self._drain(lane))
        return future

    async def flush(self) -> None:
        """Write everything queued, held appends included; wait for the lanes to be idle."""
        for lane in self._lanes:
            while lane.queue or lane.task is not None:
                if lane.task is None:
                    lane.task = asyncio.get_running_loop().create_task(self._drain(lane))
                await asyncio.shield(lane.task)

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.queue:
                batch = lane.queue[: self._max_batch]
                del lane.queue[: self._max_batch]
                await self._write(batch)
        finally:
            lane.task = None

    async def _write(self, batch: list[Write]) -> None:
        live = [w for w in batch if w.future is None or not w.future.done()]
        if not live:
            return
        errors: dict[int, StoreError] = {}
        for attempt in range(3):
            try:
                async with self._connect("appending events") as conn:
                    errors = await _commit(conn, live, self._channel())
                break
            except StoreError as exc:
                cause = exc.__cause__
                sqlstate = getattr(cause, "sqlstate", None) or ""
                if sqlstate in _RETRY and attempt < 2:
                    continue
                if len(live) > 1 and not isinstance(exc, StoreUnavailable):
                    for write in live:  # one append per transaction: the refusal is its own
                        await self._write([write])
                    return
                errors = {id(w): exc for w in live}
                break
            except Exception as exc:  # a bug, not a refusal: fail the batch, never strand it
                log.exception("group commit failed")
                error = StoreError(f"appending events failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                errors = {id(w): error for w in live}
                break
        for write in live:
            refused = errors.get(id(write))
            future = write.future
            if future is None:
                if refused is not None:
                    log.warning("dropped held events of run %r: %s", write.run_id, refused)
            elif not future.done():
                if refused is not None:
                    future.set_exception(refused)
                else:
                    future.set_result(None)


async def _commit(
    conn: psycopg.AsyncConnection[Any], batch: list[Write], channel: str
) -> dict[int, StoreError]:
    """Write ``batch`` in one transaction; return the refusals, by ``id(write)``."""
    errors: dict[int, StoreError] = {}
    creates = [w for w in batch if isinstance(w, Create)]
    writes = [w for w in batch if isinstance(w, Append)]
    async with conn.pipeline(), conn.transaction():
        # what the stored events change in pending approvals, in their order
        approvals: list[tuple[RunId, Sequence[Change]]] = []
        if creates:
            await _create(conn, creates, channel, errors)
            approvals = [
                (c.run_id, c.approvals) for c in creates if c.approvals and id(c) not in errors
            ]
        if not writes:
            if approvals:
                await _pg_approvals.apply(conn, approvals)
            return errors
        run_ids = sorted({w.run_id for w in writes})
        locked_cur = await conn.execute(LOCK_RUNS, (run_ids,))
        last_cur = await conn.execute(LAST_EVENTS, (run_ids,))
        epochs = {run_id: epoch for run_id, epoch, *_ in await locked_cur.fetchall()}
        heads: dict[str, list[Any]] = {}
        for run_id, seq, digest, _ in await last_cur.fetchall():
            if run_id in epochs:
                heads[run_id] = [seq or 0, digest or GENESIS]
        rows: list[tuple[Any, ...]] = []
        statuses: dict[str, list[Any]] = {}
        snapshots: dict[str, tuple[Any, ...]] = {}
        for write in writes:
            run_id = write.run_id
            head = heads.get(run_id)
            if head is None:
                errors[id(write)] = RunNotFound(run_id)
                continue
            if write.epoch is not None and epochs[run_id] != write.epoch:
                errors[id(write)] = LeaseLost(run_id, write.epoch, epochs[run_id])
                continue
            try:
                new_rows, digest = event_rows(run_id, head[0], head[1], write.events)
            except StoreError as exc:
                errors[id(write)] = exc
                continue
            rows.extend(new_rows)
            head[0] += len(new_rows)
            head[1] = digest
            if write.status is not None or write.error is not None:
                change = statuses.setdefault(run_id, [None, None, False])
                if write.status is not None:
                    change[0], change[2] = write.status, write.finished
                if write.error is not None:
                    change[1] = write.error
            if write.snapshot is not None:
                snapshots[run_id] = write.snapshot
            if write.approvals:
                approvals.append((run_id, write.approvals))
        cur = conn.cursor()
        if rows:
            await cur.executemany(INSERT_EVENT, rows)
        if statuses:
            ids = list(statuses)
            now = time.time()
            await cur.execute(
                UPDATE_STATUSES,
                (
                    ids,
                    [statuses[r][0] for r in ids],
                    [statuses[r][1] for r in ids],
                    [now] * len(ids),
                    [statuses[r][2] for r in ids],
                ),
            )
        if snapshots:
            await cur.executemany(UPSERT_SNAPSHOT, list(snapshots.values()))
        if approvals:  # in the transaction that stores the events that say so
            await _pg_approvals.apply(conn, approvals)
    return errors


async def _create(
    conn: psycopg.AsyncConnection[Any],
    creates: list[Create],
    channel: str,
    errors: dict[int, StoreError],
) -> None:
    """Insert new runs (a taken id fails its own create) and their first events."""
    cur = conn.cursor()
    await cur.executemany(
        INSERT_RUN + " RETURNING run_id", [c.row for c in creates], returning=True
    )
    created: set[str] = set()
    while True:
        row = await cur.fetchone()
        if row is not None:
            created.add(row[0])
        if not cur.nextset():
            break
    events: list[tuple[Any, ...]] = []
    for create in creates:
        if create.run_id in created:
            events.extend(create.events)
            created.discard(create.run_id)  # a second create of the same id in the batch
        else:
            errors[id(create)] = ConflictError(f"run {create.run_id!r} already exists")
    if events:
        await cur.executemany(INSERT_EVENT, events)
    if any(c.queued and id(c) not in errors for c in creates):
        await cur.execute(NOTIFY, (channel, "work"))
