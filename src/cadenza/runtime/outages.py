"""Riding out a store that is away for a while (a PostgreSQL restart, a failover, a dropped
network): an engine keeps its runs and retries, with backoff and jitter, until the store is
back, then continues them.

A store raises :class:`~cadenza.core.errors.StoreUnavailable` when it could not be reached; an
append that failed that way may still have been committed (the connection dropped after the
commit was sent). :func:`append_through` settles that by reading the run's log back: the
events are either there (the append happened) or appended again, in order. If the run's lease
was taken over meanwhile, the store's fencing refuses the append (:class:`LeaseLost`) and the
new holder goes on: nothing is stored twice either way.

:class:`Outage` is what one engine knows of the store's health: it logs one warning when the
store goes away and one line when it is back, however many runs noticed, and gives each retry
its delay (exponential backoff with full jitter, capped at :data:`MAX_DELAY` so that runs
continue within about a second of the store's return)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from cadenza.core.clock import SYSTEM_CLOCK, Clock
from cadenza.core.errors import ConflictError, StoreUnavailable
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.store.base import LeaseLost

_log = structlog.get_logger("cadenza.engine")

T = TypeVar("T")

#: The first retry's delay bound and the cap of the exponential backoff (seconds).
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
#: Seconds after an outage ends in which failures (the last broken connections of a pool, a
#: server still starting) count as the same outage: not warned about again.
FLAPPING = 10.0


class Outage:
    """The store's health as one engine sees it; shared by everything the engine does. Its
    times and the retries' delays are the engine's ``clock``'s."""

    __slots__ = ("_ended", "_failures", "_loud", "clock", "since")

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.since: float | None = None  # monotonic time the store was first seen away
        self._failures = 0
        self._ended = float("-inf")  # when the last outage was seen to end
        self._loud = False  # this outage was announced (not a flap of the last one)

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException, doing: str) -> None:
        """Something could not reach the store; the first failure of an outage is logged."""
        self._failures += 1
        if self.since is None:
            self.since = now = self.clock.monotonic()
            self._loud = now - self._ended >= FLAPPING
            if self._loud:
                _log.warning("store_unavailable", doing=doing, error=str(exc), retrying=True)

    def back(self) -> None:
        """Something reached the store again: the outage (if any) is over."""
        if self.since is None:
            return
        lasted = self.clock.monotonic() - self.since
        (_log.warning if self._loud else _log.debug)(
            "store_available_again", after_seconds=round(lasted, 3), failures=self._failures
        )
        self.since = None
        self._failures = 0
        self._ended = self.clock.monotonic()

    async def pause(self, attempt: int) -> None:
        """Wait before retry number ``attempt`` (0-based): full jitter, capped."""
        await self.clock.sleep(random.uniform(0, min(MAX_DELAY, FIRST_DELAY * 2**attempt)))

    async def retry(self, doing: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` until it does not fail with :class:`StoreUnavailable` (other errors are
        raised); cancelling the caller is the only other way out."""
        attempt = 0
        while True:
            try:
                result = await work()
            except StoreUnavailable as exc:
                self.failed(exc, doing)
                await self.pause(attempt)
                attempt += 1
                continue
            self.back()
            return result


class AppendGate:
    """The appends of one run execution in flight, so that a retried append can tell an
    earlier one still settling (wait for it) from another writer's events (a conflict)."""

    __slots__ = ("_settled", "in_flight", "troubled")

    def __init__(self) -> None:
        self.in_flight = 0
        self.troubled = False  # an append of this execution met an outage
        self._settled: asyncio.Event | None = None  # exists while someone waits

    async def settled(self) -> None:
        """Wait until some append of this execution finishes."""
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()

    def finished(self) -> None:
        self.in_flight -= 1
        if self._settled is not None:
            self._settled.set()
            self._settled = None


async def append_through(
    outage: Outage,
    gate: AppendGate,
    run_id: RunId,
    events: Sequence[Event],
    append: Callable[[], Awaitable[None]],
    read_after: Callable[[int], Awaitable[list[Event]]],
) -> None:
    """``append()`` the run's ``events``, riding out an outage: on
    :class:`StoreUnavailable` retry until the store is back. On a conflict (the log does not
    end where the events start) look at the log: if it holds these events, an earlier try was
    committed; if it ends before them while an earlier append of this execution is still being
    retried, wait for that one and append again; anything else is another writer's (the
    conflict is raised, as is :class:`LeaseLost`: the lease was taken over)."""
    gate.in_flight += 1
    try:
        attempt = 0
        alone = 0  # conflicts seen with no earlier append of this execution in flight
        while True:
            try:
                await append()
                outage.back()
                return
            except LeaseLost:
                raise
            except StoreUnavailable as exc:
                gate.troubled = True
                outage.failed(exc, "appending events")
                await outage.pause(attempt)
                attempt += 1
            except ConflictError:
                # Out of order only after an append of this execution met the outage.
                if not events or not gate.troubled or alone > 2:
                    raise
            # Unsure whether an earlier try was committed, or out of order: read the log.
            first = events[0].seq
            try:
                stored = await read_after(first - 1)
            except StoreUnavailable as exc:
                outage.failed(exc, "reading events")
                await outage.pause(attempt)
                attempt += 1
                continue
            outage.back()
            if stored:
                if _same(stored[: len(events)], events):
                    return  # committed by an earlier try
                raise ConflictError(
                    f"run {run_id!r}: event {first} was stored by another writer "
                    "(its lease was taken over while the store was away)"
                )
            if gate.in_flight > 1:
                await gate.settled()  # an earlier append is being retried: after it
            else:
                alone += 1  # the log ended right before it, or a gap nothing will fill
    finally:
        gate.finished()


def _same(stored: Sequence[Event], ours: Sequence[Event]) -> bool:
    return len(stored) == len(ours) and all(
        (a.seq, str(a.type), a.path, a.scope, a.attempt, a.ts)
        == (b.seq, str(b.type), b.path, b.scope, b.attempt, b.ts)
        for a, b in zip(stored, ours, strict=True)
    )
