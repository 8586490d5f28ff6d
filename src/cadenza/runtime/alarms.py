"""The runs an engine suspended until a time (a long timer or backoff), and the one task that
wakes them when they are due.

A suspended run holds no task and no lease: all that is left of it in the process is an entry
here (its id and fire time, some 200 bytes), so that an engine without a worker wakes its own
runs on time while it is open, and :meth:`Engine.wait` can follow a run across its sleeps.
The store has the same time as the run's ``wake_at``, so any worker may wake the run instead
(or after this process is gone); whoever claims it first continues it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Awaitable, Callable

import structlog

from cadenza.core.clock import SYSTEM_CLOCK, Clock
from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.wakeups import Wakeups
from cadenza.store.base import Store

_log = structlog.get_logger("cadenza.engine")

#: How many due runs are woken (claimed) together.
BATCH = 500
#: Seconds before runs whose wake-up failed (e.g. the store was away) are tried again.
RETRY_AFTER = 1.0

#: Wakes these due runs (claims and continues them, or tells a worker to); a run it can not
#: wake yet it sets a new alarm for, the others are dropped afterwards.
Ring = Callable[[list[RunId]], Awaitable[None]]


class Alarms:
    """Fire times of suspended runs; calls ``ring`` with the ones that are due (by ``clock``),
    oldest first, in batches of at most :data:`BATCH`, from one background task."""

    def __init__(self, ring: Ring, clock: Clock = SYSTEM_CLOCK) -> None:
        self._ring = ring
        self._clock = clock
        self._heap: list[tuple[float, RunId]] = []  # may hold stale entries: _due decides
        self._due: dict[RunId, float] = {}
        self._waiters: dict[RunId, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sooner = asyncio.Event()  # an alarm earlier than the one waited for was set

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._due

    def __len__(self) -> int:
        return len(self._due)

    def set(self, run_id: RunId, at: float) -> None:
        """Wake ``run_id`` at ``at`` (epoch seconds), replacing any earlier alarm for it."""
        earliest = self._heap[0][0] if self._heap else None
        self._due[run_id] = at
        heapq.heappush(self._heap, (at, run_id))
        if earliest is None or at < earliest:
            self._sooner.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def drop(self, run_id: RunId) -> None:
        """Forget ``run_id``'s alarm (it was woken, or something else moves it on); whoever
        waits for it to wake goes on."""
        self._due.pop(run_id, None)
        waiter = self._waiters.pop(run_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def woken(self, run_id: RunId) -> None:
        """Return once ``run_id`` is no longer asleep here (at once if it is not)."""
        if run_id not in self._due:
            return
        waiter = self._waiters.get(run_id)
        if waiter is None:
            waiter = self._waiters[run_id] = asyncio.get_running_loop().create_future()
        await asyncio.shield(waiter)

    async def close(self) -> None:
        """Stop waking runs (they stay due in the store); those waiting for one are
        cancelled, as waiting for a run in flight is when its engine closes."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
        self._due.clear()
        self._heap.clear()

    async def _loop(self) -> None:
        while True:
            clock = self._clock
            due = self._take_due(clock.now())
            if due:
                try:
                    await self._ring([run_id for _, run_id in due])
                except Exception:  # the alarms must outlive one failed wake-up
                    _log.exception("wake_up_failed", runs=len(due))
                    for at, run_id in due:
                        if self._due.get(run_id) == at:
                            self.set(run_id, clock.now() + RETRY_AFTER)
                for at, run_id in due:  # woken, or given up on (``ring`` set no new alarm)
                    if self._due.get(run_id) == at:
                        self.drop(run_id)
                continue
            self._sooner.clear()
            delay = self._heap[0][0] - clock.now() if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with clock.timeout(delay):
                    await self._sooner.wait()

    def _take_due(self, now: float) -> list[tuple[float, RunId]]:
        """Pop up to a batch of due alarms (skipping entries replaced since)."""
        heap: list[tuple[float, RunId]] = self._heap
        due: list[tuple[float, RunId]] = []
        while heap and heap[0][0] <= now and len(due) < BATCH:
            at, run_id = heapq.heappop(heap)
            if self._due.get(run_id) == at:
                due.append((at, run_id))
        return due


#: Claims and starts these suspended runs, now due; returns those it started or could not
#: start (with why), the others having been claimed by no one.
Wake = Callable[[list[RunId]], Awaitable[set[RunId]]]


class Sleepers:
    """The runs this engine suspended, woken when due: claimed and continued here through
    ``wake`` (or, while :attr:`wakes_own_runs` is off, left to the worker that claims every due
    run itself: it is told at once, through ``wakeups``). A run that could not be claimed
    when its alarm rang is followed: looked at again when it may be due, until it is woken
    here or something else moves it on."""

    def __init__(
        self,
        store: Store,
        leases: LeaseKeeper,
        held: HeldRuns,
        wakeups: Wakeups,
        wake: Wake,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.leases = leases
        self.held = held
        self.wakeups = wakeups
        self.clock = clock
        self._wake = wake
        self.alarms = Alarms(self._ring, clock)
        #: Whether this engine wakes the runs it suspended (a worker claims them instead).
        self.wakes_own_runs = True

    def __contains__(self, run_id: object) -> bool:
        return run_id in self.alarms

    def __len__(self) -> int:
        return len(self.alarms)

    def set_alarm(self, run_id: RunId, at: float) -> None:
        """Wake ``run_id`` at ``at`` (epoch seconds)."""
        self.alarms.set(run_id, at)

    async def woken(self, run_id: RunId) -> None:
        """Return once ``run_id`` is no longer asleep here."""
        await self.alarms.woken(run_id)

    async def close(self) -> None:
        await self.alarms.close()

    async def _ring(self, due: list[RunId]) -> None:
        if not self.wakes_own_runs:
            self.wakeups.fire()
            return
        asleep = [run_id for run_id in due if run_id not in self.held]
        done = await self._wake(asleep)
        for run_id in asleep:
            if run_id not in done:
                await self.follow(run_id)

    async def follow(self, run_id: RunId) -> None:
        """Set the next alarm of a suspended run that could not be claimed when it rang
        (another engine holds it, or it is due later than this engine knew), if it may still
        need waking: not if it ended, or only an outside event can move it on."""
        try:
            record = await self.store.get_run(run_id)
        except RunNotFound:
            return
        if record.status.terminal or record.wake_at is None:
            return
        now = self.clock.now()
        if record.owner not in (None, self.leases.owner) and (record.lease_until or 0) > now:
            self.alarms.set(run_id, record.lease_until or now)  # held: look when it may end
        else:
            self.alarms.set(run_id, max(record.wake_at, now + RETRY_AFTER))

    async def adopt(self, taken: set[RunId]) -> list[RunId]:
        """Set alarms for the suspended runs that no live engine holds and that sleep until
        a later time (but those in ``taken``); returns them."""
        now = self.clock.now()
        dead = set(await self.leases.dead_owners())
        adopted: list[RunId] = []
        for record in await self.store.list_runs(status=[WorkflowStatus.RUNNING], limit=1_000_000):
            rid = record.run_id
            if rid in taken or rid in self.held or record.wake_at is None:
                continue
            held = record.owner is not None and (record.lease_until or 0) > now
            if record.wake_at > now and (not held or record.owner in dead):
                self.alarms.set(rid, record.wake_at)
                adopted.append(rid)
        return adopted
