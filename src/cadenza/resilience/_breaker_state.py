"""The circuit breaker's state machine: plain functions over a plain record and a clock,
with no storage and no I/O, so one logic serves the in-process backend and a shared one."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, TypeVar

from cadenza.core.errors import CadenzaError, DefinitionError

R = TypeVar("R")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Open when at least ``minimum_calls`` of the last ``window`` calls are known and the share
    of them that failed is ``>= failure_rate``; stay open ``cool_down`` seconds; then let
    ``probes`` calls through: all succeed -> closed, any fails -> open again."""

    failure_rate: float = 0.5
    window: int = 20
    minimum_calls: int = 10
    cool_down: float = 30.0
    probes: int = 3

    def __post_init__(self) -> None:
        def real(x: object) -> bool:  # bools and NaN/inf are mistakes here, not numbers
            return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

        rate, window, least = self.failure_rate, self.window, self.minimum_calls
        checks = [
            (real(rate) and 0 < rate <= 1, "failure_rate", "a fraction > 0 and <= 1"),
            (type(window) is int and window >= 1, "window", "an integer >= 1"),
            (type(least) is int and 1 <= least <= window, "minimum_calls",
             f"an integer from 1 to window ({window!r})"),
            (real(self.cool_down) and self.cool_down >= 0, "cool_down", "seconds >= 0"),
            (type(self.probes) is int and self.probes >= 1, "probes", "an integer >= 1"),
        ]  # fmt: skip
        for ok, name, rule in checks:
            if not ok:
                got = getattr(self, name)
                raise DefinitionError(f"must be {rule}, got {got!r}", path=f"breaker.{name}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change, for the event log and observers. ``at`` is the clock time it took effect
    (for open -> half_open: when the cool-down ended, not when it was noticed). ``failure_rate``
    is set when the breaker opened on its failure rate."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    failure_rate: float | None
    reason: str


Listener = Callable[[Transition], None]


class CircuitOpen(CadenzaError):
    """A call was refused and not made. ``retry_after``: seconds until probes are let through.
    When the breaker is half-open with every probe taken it is ``cool_down``, only a hint (the
    probes decide; a failed one re-opens the breaker for that long)."""

    __slots__ = ("breaker", "reason", "retry_after", "state")  # cheap to make: no __dict__

    def __init__(
        self, breaker: str, retry_after: float, reason: str = "", state: BreakerState = OPEN
    ) -> None:  # no super().__init__: BaseException.__new__ has set ``args`` already
        self.breaker = breaker
        self.retry_after = retry_after
        self.reason = reason
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.breaker, self.retry_after, self.reason, self.state)

    def __str__(self) -> str:  # formatted on demand: rejecting a call is meant to be cheap
        why = f" ({self.reason})" if self.reason else ""
        shown = "half-open" if self.state is HALF_OPEN else str(self.state)
        return f"circuit {self.breaker!r} is {shown}{why}; retry in {self.retry_after:.1f}s"


@dataclass(slots=True)
class BreakerRecord:
    """The whole state of one breaker as plain data (a store keeps it as one row). ``ring`` is
    the window (1 = failure), written at ``head``, ``count`` slots filled, ``failures`` their
    sum. ``generation`` counts state changes; a ticket is the generation it was issued in."""

    window: int
    state: BreakerState = CLOSED
    generation: int = 0
    ring: bytearray = field(default_factory=bytearray)
    head: int = 0
    count: int = 0
    failures: int = 0
    open_until: float = 0.0
    reason: str = ""  # why it opened, for CircuitOpen
    probes_out: int = 0  # half-open: probes handed out (a cancelled one is handed back)
    probes_ok: int = 0

    def __post_init__(self) -> None:
        self.ring = self.ring or bytearray(self.window)


class BreakerBackend(Protocol):
    """Where breaker records live: in this process (:class:`LocalBackend`), or in a store that
    shares them across workers (which then need a clock they agree on, e.g. ``time.time``).

    ``transact`` is the only write: load ``name``'s record (new and closed for ``config`` if
    there is none), run ``step(record, *args)``, keep what it changed and return its result,
    atomically. SQL does that in one transaction (``SELECT ... FOR UPDATE``, step, ``UPDATE``)
    or optimistically (read, step on the copy, compare-and-set on a row version, re-run on
    conflict). Steps touch nothing but the record and the clock, so re-running one is safe;
    one that raises (:class:`CircuitOpen`) changed nothing, so a rejection is a plain read.
    Synchronous, and on every guarded call: the in-process one must stay cheap."""

    def transact(self, name: str, config: BreakerConfig, step: Callable[..., R], *args: Any) -> R:
        """Apply ``step`` to ``name``'s record atomically and return what it returns."""
        ...

    def load(self, name: str) -> BreakerRecord | None:
        """A copy of ``name``'s record (``None`` if it has none yet), for display."""
        ...


class LocalBackend:
    """Records in a dict: breakers that live in one process."""

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}

    def transact(self, name: str, config: BreakerConfig, step: Callable[..., R], *args: Any) -> R:
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = BreakerRecord(config.window)
        return step(record, *args)

    def load(self, name: str) -> BreakerRecord | None:
        r = self._records.get(name)
        return None if r is None else replace(r, ring=bytearray(r.ring))


# ----------------------------------------------------------------- the logic: pure steps


class _Ctx(NamedTuple):
    """What the steps need besides the record; built once per breaker."""

    name: str
    config: BreakerConfig
    clock: Callable[[], float]


def _move(
    r: BreakerRecord, c: _Ctx, to: BreakerState, at: float, why: str, rate: float | None = None
) -> Transition:
    t = Transition(c.name, r.state, to, at, rate, why)
    r.state, r.generation = to, r.generation + 1
    r.ring, r.head, r.count, r.failures = bytearray(r.window), 0, 0, 0
    r.probes_out = r.probes_ok = 0
    return t


def _open(r: BreakerRecord, c: _Ctx, why: str, rate: float | None = None) -> Transition:
    t = _move(r, c, OPEN, c.clock(), why, rate)
    r.open_until, r.reason = t.at + c.config.cool_down, why
    return t


def _half_open(r: BreakerRecord, c: _Ctx) -> Transition:
    return _move(r, c, HALF_OPEN, r.open_until, f"cool-down of {c.config.cool_down:g}s over")


def _acquire(r: BreakerRecord, c: _Ctx) -> tuple[int, Transition | None]:
    if r.state is CLOSED:
        return r.generation, None
    t = None
    if r.state is OPEN:
        now = c.clock()
        if now < r.open_until:
            raise CircuitOpen(c.name, r.open_until - now, r.reason)
        t = _half_open(r, c)
    if r.probes_out >= c.config.probes:
        why = f"waiting for {r.probes_out - r.probes_ok} of {c.config.probes} probes"
        raise CircuitOpen(c.name, c.config.cool_down, why, HALF_OPEN)
    r.probes_out += 1
    return r.generation, t


def _record(r: BreakerRecord, c: _Ctx, ticket: int | None, ok: bool | None) -> Transition | None:
    """Count an outcome; ``ok=None`` is a call that ended without one (cancelled)."""
    if ticket is not None and ticket != r.generation:
        return None  # acquired before the last state change: stale
    if r.state is CLOSED:
        if ok is None:
            return None
        i, bad = r.head, 0 if ok else 1
        r.failures += bad - r.ring[i]  # a slot is 0 until the window is full
        r.ring[i] = bad
        r.head = i + 1 if i + 1 < r.window else 0
        if r.count < r.window:
            r.count += 1
        cfg = c.config
        if r.failures and r.count >= cfg.minimum_calls and r.failures / r.count >= cfg.failure_rate:
            rate = r.failures / r.count
            return _open(r, c, f"failure rate {rate:.0%} over the last {r.count} calls", rate)
    elif r.state is HALF_OPEN and r.probes_out > r.probes_ok:  # else no probe is out
        if ok is None:
            r.probes_out -= 1
        elif not ok:
            return _open(r, c, "a half-open probe failed")
        else:
            r.probes_ok += 1
            if r.probes_ok >= c.config.probes:
                return _move(r, c, CLOSED, c.clock(), f"{r.probes_ok} probes succeeded")
    return None  # open: nothing is acquired while open, so any outcome is stale


def _poll(r: BreakerRecord, c: _Ctx) -> tuple[BreakerState, Transition | None]:
    t = _half_open(r, c) if r.state is OPEN and c.clock() >= r.open_until else None
    return r.state, t


def _reset(r: BreakerRecord, c: _Ctx) -> Transition | None:
    was = r.state
    t = _move(r, c, CLOSED, c.clock(), "reset")
    return None if was is CLOSED else t
