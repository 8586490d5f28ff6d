"""Time, as everything that runs workflows sees it: the wall clock (timestamps, deadlines,
wake-up times, which a store keeps and other processes compare), a monotonic clock (how long
something took), and sleeping until a time. An engine is given one :class:`Clock` and hands
it to everything it does, so that a test can replace it with a :class:`ManualClock` and move
time on instead of waiting for it.

The system clock's members are the standard library's own functions, bound as attributes:
reading the time through it costs what calling :func:`time.time` does."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


class Clock(Protocol):
    """What an engine asks of time."""

    def now(self) -> float:
        """Wall-clock time, epoch seconds (stored: deadlines, wake-up times, timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back (durations, intervals)."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Return after ``seconds`` of this clock's time (at once for ``<= 0``)."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        """Like :func:`asyncio.timeout`, in this clock's time: the block is cancelled and
        :class:`TimeoutError` raised once ``seconds`` have passed (``None``: never)."""
        ...


class SystemClock:
    """The real clock: :func:`time.time`, :func:`time.monotonic`, :func:`asyncio.sleep` and
    :func:`asyncio.timeout`."""

    __slots__ = ("monotonic", "now", "sleep", "timeout")

    def __init__(self) -> None:
        self.now: Callable[[], float] = time.time
        self.monotonic: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.timeout: Callable[[float | None], AbstractAsyncContextManager[Any]] = asyncio.timeout

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock of every engine that is given none.
SYSTEM_CLOCK = SystemClock()


class _Wait:
    """One sleep or timeout waiting for a :class:`ManualClock`."""

    __slots__ = ("call", "live")

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call
        self.live = True


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`), for tests: sleeps and timeouts
    on it end when it is advanced past their end, whatever the real time.

    It starts at ``start`` (epoch seconds; default: the real time now). A store keeps its own
    (real) time to decide which runs are due and which leases have lapsed; a test whose runs
    the store must find due starts the engine's clock a little in the past (``start=
    time.time() - 60``), so that the times the engine records have passed for the store."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._elapsed = 0.0
        # By the time they are due (wall clock: a delay computed from a wall time ends
        # exactly then), then the order they came in.
        self._due: list[tuple[float, int, _Wait]] = []
        self._order = itertools.count()
        self._changed: asyncio.Event | None = None

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        wait = self._at(seconds, wake)
        try:
            await future
        finally:
            wait.live = False

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        return self._timeout(seconds)

    @contextlib.asynccontextmanager
    async def _timeout(self, seconds: float | None) -> AsyncIterator[None]:
        async with asyncio.timeout(None) as scope:
            if seconds is None:
                yield
                return
            loop = asyncio.get_running_loop()
            wait = self._at(seconds, lambda: scope.reschedule(loop.time()))
            try:
                yield
            finally:
                wait.live = False

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``; the sleeps and timeouts that end by then end (their
        tasks go on at their next turn of the event loop)."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        self._now += seconds
        self._elapsed += seconds
        due = self._due
        while due and due[0][0] <= self._now:
            wait = heapq.heappop(due)[2]
            if wait.live:
                wait.live = False
                wait.call()

    @property
    def waiting(self) -> int:
        """How many sleeps and timeouts wait for the clock now."""
        return sum(1 for _, _, wait in self._due if wait.live)

    async def until_waiting(self, count: int = 1) -> None:
        """Return once at least ``count`` sleeps or timeouts wait for the clock: what a test
        waits for before it advances the clock past them."""
        while self.waiting < count:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _at(self, seconds: float, call: Callable[[], None]) -> _Wait:
        wait = _Wait(call)
        heapq.heappush(self._due, (self._now + max(seconds, 0.0), next(self._order), wait))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        if seconds <= 0:
            self.advance(0)
        return wait

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, waiting={self.waiting})"
