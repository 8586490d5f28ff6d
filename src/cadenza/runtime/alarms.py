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
import time
from collections.abc import Awaitable, Callable

import structlog

from cadenza.core.ids import RunId

_log = structlog.get_logger("cadenza.engine")

#: How many due runs are woken (claimed) together.
BATCH = 500
#: Seconds before runs whose wake-up failed (e.g. the store was away) are tried again.
RETRY_AFTER = 1.0

#: Wakes these due runs (claims and continues them, or tells a worker to); a run it can not
#: wake yet it sets a new alarm for, the others are dropped afterwards.
Ring = Callable[[list[RunId]], Awaitable[None]]


class Alarms:
    """Fire times of suspended runs; calls ``ring`` with the ones that are due, oldest
    first, in batches of at most :data:`BATCH`, from one background task."""

    def __init__(self, ring: Ring) -> None:
        self._ring = ring
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
            due = self._take_due(time.time())
            if due:
                try:
                    await self._ring([run_id for _, run_id in due])
                except Exception:  # the alarms must outlive one failed wake-up
                    _log.exception("wake_up_failed", runs=len(due))
                    for at, run_id in due:
                        if self._due.get(run_id) == at:
                            self.set(run_id, time.time() + RETRY_AFTER)
                for at, run_id in due:  # woken, or given up on (``ring`` set no new alarm)
                    if self._due.get(run_id) == at:
                        self.drop(run_id)
                continue
            self._sooner.clear()
            delay = self._heap[0][0] - time.time() if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
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
