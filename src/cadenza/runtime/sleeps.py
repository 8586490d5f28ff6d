"""The durable sleeps of one run in flight (WAIT timers, retry and compensation backoffs),
and when the run has nothing to do but sleep.

A sleep's fire time is already in the log when it starts, so the run need not stay in memory
for it: once *every* strand of the run is asleep, the run is suspended (released, its
``wake_at`` set to the earliest fire time, its task and lease given up) and woken again when
due, from the store, by this engine or any worker. Suspending costs a release, a claim and a
reload (a few store round trips), so sleeps shorter than ``short`` seconds are slept in memory.

A run is idle when every step in flight is asleep. Steps count as busy while they execute;
a step that contains others (parallel, map, loop) does not count while it waits for its
children, only while it does work of its own (committing, evaluating an exit condition).
Between a step finishing and the next one starting there can be a few event-loop iterations in
which nothing is counted busy; so idleness must hold, unchanged, for :data:`SETTLE` seconds and
then for :data:`HOPS` more loop iterations before the run is suspended. Were it suspended too
early, nothing would be lost (every result is committed), only delayed until the sleep ends."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from cadenza.core.clock import SYSTEM_CLOCK, Clock

T = TypeVar("T")

#: Default shortest sleep (seconds) that suspends its run rather than sleeping in memory.
SHORT_SLEEP = 1.0
#: Seconds the run must stay idle, and loop iterations after that, before it is suspended.
SETTLE = 0.01
HOPS = 8


class _Frame:
    """One step in flight: how many of its child graphs are running (it is not busy then)."""

    __slots__ = ("children",)

    def __init__(self) -> None:
        self.children = 0


_STEP: ContextVar[_Frame | None] = ContextVar("cadenza_step", default=None)

#: Called with the time the run is next due, once it has nothing to do but sleep.
OnIdle = Callable[[float], None]


class Sleeps:
    """The sleep bookkeeping of one run execution, on ``clock``. Without ``on_idle`` (or with
    ``short`` infinite) every sleep is slept in memory, as a plain ``clock.sleep``."""

    __slots__ = ("_fired", "_on_idle", "_parked", "_pending", "_version", "busy", "clock", "short")

    def __init__(
        self, short: float = math.inf, on_idle: OnIdle | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.short = short
        self.clock = clock
        self._on_idle = on_idle
        self.busy = 0  # steps in flight doing work (or sleeping), not waiting for children
        self._parked: list[float] = []  # fire times of the sleeps that may suspend the run
        self._version = 0  # bumped on every change of the above
        self._pending = False  # an idleness check is scheduled
        self._fired = False

    # -- accounting (called by RunExecution.run_graph) ------------------------------------------

    async def step(self, work: Awaitable[T]) -> T:
        """Run one step's executor, counted busy (except while it waits for its children)."""
        frame = _Frame()
        token = _STEP.set(frame)
        self._busy(+1)
        try:
            return await work
        finally:
            _STEP.reset(token)
            if frame.children == 0:
                self._busy(-1)

    @contextlib.contextmanager
    def children(self) -> Iterator[None]:
        """Around a graph run inside a step: that step waits for its children meanwhile."""
        frame = _STEP.get()
        if frame is None:  # the workflow's own graph: no step contains it
            yield
            return
        frame.children += 1
        if frame.children == 1:
            self._busy(-1)
        try:
            yield
        finally:
            frame.children -= 1
            if frame.children == 0:
                self._busy(+1)

    # -- sleeping --------------------------------------------------------------------------------

    async def until(self, when: float | None) -> None:
        """Sleep until ``when`` (epoch seconds; ``None`` or past: not at all). A long enough
        sleep may end with the run suspended instead (its task is cancelled)."""
        if when is None:
            return
        delay = when - self.clock.now()
        if delay <= 0:
            return
        if self._on_idle is None or delay < self.short:
            await self.clock.sleep(delay)
            return
        outside = _STEP.get() is None  # e.g. a compensation's backoff: count it as the work
        if outside:
            self._busy(+1)
        self._parked.append(when)
        self._changed()
        try:
            await self.clock.sleep(delay)
        finally:
            self._parked.remove(when)
            self._changed()
            if outside:
                self._busy(-1)

    def _busy(self, change: int) -> None:
        self.busy += change
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        if not self._pending and self._idle():
            self._pending = True
            asyncio.get_running_loop().call_later(SETTLE, self._settle, self._version, HOPS)

    def _idle(self) -> bool:
        parked = len(self._parked)
        return parked > 0 and parked == self.busy and not self._fired

    def _settle(self, version: int, hops: int) -> None:
        """Suspend the run if it stayed idle, unchanged, since ``version``."""
        if not self._idle():
            self._pending = False
        elif version != self._version:  # it changed meanwhile: give it time again
            asyncio.get_running_loop().call_later(SETTLE, self._settle, self._version, HOPS)
        elif hops:
            asyncio.get_running_loop().call_soon(self._settle, version, hops - 1)
        else:
            self._pending = False
            self._fired = True
            assert self._on_idle is not None
            self._on_idle(min(self._parked))
