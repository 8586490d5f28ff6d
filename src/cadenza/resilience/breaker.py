"""Circuit breakers: one per dependency ("payments"), shared by every run in the process. While a
breaker is open, steps that use it fail fast with :class:`CircuitOpen` instead of piling calls
onto a dependency that is down; after a cool-down, a few probe calls find out if it is back.

The logic is plain functions over a plain record (:class:`BreakerRecord`) and a clock, kept
apart from storage: a :class:`BreakerBackend` only holds records and applies those functions
atomically, so a store-backed backend can later share a breaker across worker processes.

Outcomes are tagged: :meth:`CircuitBreaker.acquire` returns a ticket (the record's generation,
bumped on every state change) and an outcome reported with an older ticket is ignored, so a
slow call that started while closed can neither pass for a half-open probe nor re-open a
breaker that has since recovered.

Not thread-safe, by design: runs share one event loop, and every operation on a breaker's state
is synchronous (nothing awaits in the middle of one)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

from cadenza.core.errors import DefinitionError
from cadenza.resilience._breaker_state import (
    HALF_OPEN,
    OPEN,
    BreakerBackend,
    BreakerConfig,
    BreakerRecord,
    BreakerState,
    CircuitOpen,
    Listener,
    LocalBackend,
    Transition,
    _acquire,
    _Ctx,
    _poll,
    _record,
    _reset,
)

_log = structlog.get_logger("cadenza.breaker")
_DEFAULT = BreakerConfig()  # frozen: one shared default is safe

__all__ = [
    "BreakerBackend",
    "BreakerConfig",
    "BreakerRecord",
    "BreakerRegistry",
    "BreakerState",
    "Breakers",
    "CircuitBreaker",
    "CircuitOpen",
    "LocalBackend",
    "Transition",
]

# ----------------------------------------------------------------- what steps use


class CircuitBreaker:
    """One named breaker. Shared ones come from a :class:`BreakerRegistry`; one constructed
    directly is private (with its own :class:`LocalBackend` unless given a backend)."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig = _DEFAULT,
        *,
        backend: BreakerBackend | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Listener | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._backend: BreakerBackend = backend if backend is not None else LocalBackend()
        self._clock = clock
        self._on_transition = on_transition
        self._ctx = _Ctx(name, config, clock)

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down is over turns half-open here."""
        state, t = self._backend.transact(self.name, self.config, _poll, self._ctx)
        if t is not None:
            self._emit(t)
        return state

    def acquire(self) -> int:
        """Admit one call (returning its ticket) or raise :class:`CircuitOpen`. Pass the ticket
        to :meth:`success` / :meth:`failure` / :meth:`release`: without it, an outcome counts
        for the current state, wrong for a call that was in flight across a state change."""
        ticket, t = self._backend.transact(self.name, self.config, _acquire, self._ctx)
        if t is not None:
            self._emit(t)
        return ticket

    def success(self, ticket: int | None = None) -> None:
        self._outcome(ticket, True)

    def failure(self, ticket: int | None = None) -> None:
        self._outcome(ticket, False)

    def release(self, ticket: int | None = None) -> None:
        """The call ended with no outcome (cancelled): count nothing, hand a probe back."""
        self._outcome(ticket, None)

    def _outcome(self, ticket: int | None, ok: bool | None) -> None:
        t = self._backend.transact(self.name, self.config, _record, self._ctx, ticket, ok)
        if t is not None:
            self._emit(t)

    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Acquire, call ``fn`` (awaiting what it returns if awaitable), record the outcome: an
        ``Exception`` is a failure, cancellation counts nothing. Raises :class:`CircuitOpen`,
        without calling ``fn``, when the breaker refuses the call."""
        ticket = self.acquire()
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            self._outcome(ticket, False)
            raise
        except BaseException:
            self._outcome(ticket, None)
            raise
        self._outcome(ticket, True)
        return result

    def reset(self) -> None:
        """Close the breaker with an empty window, whatever its state (an operator's override).
        Calls in flight become stale."""
        t = self._backend.transact(self.name, self.config, _reset, self._ctx)
        if t is not None:
            self._emit(t)

    def snapshot(self) -> dict[str, Any]:
        """For display: state, calls and failures in the window, seconds until probes. A read:
        it does not turn an overdue open breaker half-open."""
        r = self._backend.load(self.name) or BreakerRecord(self.config.window)
        now, state = self._clock(), r.state
        if state is OPEN and now >= r.open_until:
            state = HALF_OPEN
        return {
            "name": self.name,
            "state": str(state),
            "calls": r.count,
            "failures": r.failures,
            "failure_rate": r.failures / r.count if r.count else None,
            "retry_after": r.open_until - now if state is OPEN else None,
        }

    def _emit(self, t: Transition) -> None:
        if self._on_transition is not None:
            _notify(self._on_transition, t)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, {self.config!r})"


def _notify(fn: Listener, t: Transition) -> None:
    try:
        fn(t)
    except Exception:  # an observer must not break the breaker, nor the call it guards
        _log.exception("breaker_listener_failed", breaker=t.breaker, to_state=str(t.to_state))


class BreakerRegistry:
    """The breakers of one engine: one per name, shared by every run in the process."""

    def __init__(
        self, *, backend: BreakerBackend | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._backend: BreakerBackend = backend if backend is not None else LocalBackend()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[Listener] = []

    def get(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker:
        """The breaker ``name``, created with ``config`` (or the default) on first use. With
        ``config=None`` any existing one will do; a different config for an existing name is an
        error (two steps would disagree about when the breaker opens)."""
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(
                name,
                config or BreakerConfig(),
                backend=self._backend,
                clock=self._clock,
                on_transition=self._dispatch,
            )
        elif config is not None and config != breaker.config:
            raise DefinitionError(
                f"breaker {name!r} exists with {breaker.config}, asked for {config}; "
                "use one config per breaker name",
                path=f"breakers.{name}",
            )
        return breaker

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn`` with every transition of every breaker here (what it raises is logged)."""
        self._listeners.append(fn)

    def _dispatch(self, t: Transition) -> None:
        for fn in tuple(self._listeners):
            _notify(fn, t)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def snapshot(self) -> list[dict[str, Any]]:
        """Every breaker's :meth:`CircuitBreaker.snapshot`, sorted by name."""
        return [self._breakers[n].snapshot() for n in sorted(self._breakers)]


__all__ = ["BreakerBackend", "BreakerConfig", "BreakerRecord", "BreakerRegistry", "BreakerState",
           "CircuitBreaker", "CircuitOpen", "LocalBackend", "Transition"]  # fmt: skip


class Breakers:
    """An engine's breakers: one registry, configurations by name, and the transitions since
    they were last drained (the engine records them in the log of the run whose call caused
    them; everything runs on one event loop, so that run is the one that drains next). With a
    shared ``backend`` (workers on one PostgreSQL database) the ``clock`` must be one the
    workers agree on: ``time.time``."""

    def __init__(
        self,
        configs: Mapping[str, BreakerConfig] | None = None,
        *,
        backend: BreakerBackend | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = BreakerRegistry(backend=backend, clock=clock)
        self._configs = dict(configs or {})
        self._pending: list[Transition] = []
        self.registry.add_listener(self._pending.append)

    def get(self, name: str) -> CircuitBreaker:
        return self.registry.get(name, self._configs.get(name))

    def drain(self) -> list[Transition]:
        if not self._pending:
            return []
        out, self._pending[:] = list(self._pending), []
        return out
