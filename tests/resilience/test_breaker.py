"""Circuit breakers on a fake clock: every transition, the sliding window, half-open probes,
stale outcomes, the registry, and a property test against a plain reference model."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pickle
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from cadenza.core.errors import DefinitionError
from cadenza.resilience.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    LocalBackend,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    config: BreakerConfig | None = None, now: float = 100.0
) -> tuple[CircuitBreaker, Clock, list[Transition]]:
    clock, seen = Clock(now), []
    b = CircuitBreaker(
        "payments", config or BreakerConfig(), clock=clock, on_transition=seen.append
    )
    return b, clock, seen


def outcomes(b: CircuitBreaker, pattern: str) -> None:
    """``pattern``: one character per call, ``s`` success, ``f`` failure."""
    for c in pattern:
        ticket = b.acquire()
        b.success(ticket) if c == "s" else b.failure(ticket)


def moves(seen: list[Transition]) -> list[tuple[str, str]]:
    return [(str(t.from_state), str(t.to_state)) for t in seen]


SMALL = BreakerConfig(failure_rate=0.5, window=4, minimum_calls=4, cool_down=10.0, probes=2)


# ------------------------------------------------------------------------------ config


def test_defaults() -> None:
    assert dataclasses.astuple(BreakerConfig()) == (0.5, 20, 10, 30.0, 3)
    b = CircuitBreaker("fresh")
    assert b.state is CLOSED
    assert b.snapshot() == {
        "name": "fresh",
        "state": "closed",
        "calls": 0,
        "failures": 0,
        "failure_rate": None,
        "retry_after": None,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_rate": 0}, "breaker.failure_rate: must be a fraction > 0 and <= 1, got 0"),
        ({"failure_rate": 1.5}, "breaker.failure_rate: must be a fraction > 0 and <= 1, got 1.5"),
        ({"failure_rate": math.nan}, "breaker.failure_rate: must be a fraction > 0 and <= 1"),
        ({"failure_rate": "0.5"}, "breaker.failure_rate: must be a fraction > 0 and <= 1"),
        ({"window": 0}, "breaker.window: must be an integer >= 1, got 0"),
        ({"window": 2.5}, "breaker.window: must be an integer >= 1, got 2.5"),
        ({"window": True}, "breaker.window: must be an integer >= 1, got True"),
        ({"minimum_calls": 0}, "breaker.minimum_calls: must be an integer from 1 to window (20)"),
        ({"minimum_calls": 21}, "breaker.minimum_calls: must be an integer from 1 to window (20)"),
        ({"cool_down": -1}, "breaker.cool_down: must be seconds >= 0, got -1"),
        ({"cool_down": math.inf}, "breaker.cool_down: must be seconds >= 0, got inf"),
        ({"probes": 0}, "breaker.probes: must be an integer >= 1, got 0"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        BreakerConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert info.value.path == f"breaker.{next(iter(kwargs))}"


def test_config_edges_are_valid() -> None:
    BreakerConfig(failure_rate=1, window=1, minimum_calls=1, cool_down=0, probes=1)


# ------------------------------------------------------------------------------ closed


def test_no_decision_before_minimum_calls() -> None:
    b, _, seen = make(BreakerConfig(window=20, minimum_calls=10))
    outcomes(b, "f" * 9)
    assert b.state is CLOSED and seen == []
    outcomes(b, "f")
    assert b.state is OPEN
    assert moves(seen) == [("closed", "open")]


def test_opens_when_minimum_reached_by_a_success() -> None:
    b, _, seen = make(BreakerConfig(window=10, minimum_calls=5))
    outcomes(b, "ffff")  # 100% failures, but only 4 calls
    assert b.state is CLOSED
    outcomes(b, "s")  # 5 calls, 80% failures
    assert b.state is OPEN
    assert seen[0].failure_rate == pytest.approx(0.8)


def test_opens_at_the_threshold_not_below() -> None:
    b, _, _ = make(BreakerConfig(failure_rate=0.3, window=10, minimum_calls=10))
    outcomes(b, "ss" + "ff" + "ssssss")  # 2 of 10
    assert b.state is CLOSED
    b2, _, seen = make(BreakerConfig(failure_rate=0.3, window=10, minimum_calls=10))
    outcomes(b2, "s" + "fff" + "ssssss")  # 3 of 10 = 0.3 exactly (no float slip)
    assert b2.state is OPEN
    assert seen[0].failure_rate == pytest.approx(0.3)


def test_window_slides_old_failures_fall_out() -> None:
    b, _, _ = make(SMALL)
    outcomes(b, "fsss")  # 1 of 4
    assert b.snapshot()["failures"] == 1
    outcomes(b, "s")  # the failure falls out: s s s s
    assert b.snapshot() | {"retry_after": None} == {
        "name": "payments",
        "state": "closed",
        "calls": 4,
        "failures": 0,
        "failure_rate": 0.0,
        "retry_after": None,
    }
    outcomes(b, "f")  # s s s f: 1 of 4 (the old failure would have made it 2)
    assert b.state is CLOSED
    outcomes(b, "f")  # s s f f: 2 of 4
    assert b.state is OPEN


def test_long_healthy_run_then_burst() -> None:
    b, _, _ = make(BreakerConfig(window=20, minimum_calls=10, failure_rate=0.5))
    outcomes(b, "s" * 1000 + "f" * 9)
    assert b.state is CLOSED
    outcomes(b, "f")  # 10 of the last 20
    assert b.state is OPEN


def test_opening_clears_the_window() -> None:
    b, _, _ = make(SMALL)
    outcomes(b, "ffff")
    snap = b.snapshot()
    assert (snap["state"], snap["calls"], snap["failures"]) == ("open", 0, 0)


# ------------------------------------------------------------------------------ open


def test_open_rejects_with_message_and_retry_after() -> None:
    cfg = BreakerConfig(failure_rate=0.6, window=20, minimum_calls=20, cool_down=30)
    b, clock, seen = make(cfg, now=100.0)
    outcomes(b, "s" * 8 + "f" * 12)
    assert seen == [
        Transition("payments", CLOSED, OPEN, 100.0, 0.6, "failure rate 60% over the last 20 calls")
    ]
    clock.now = 117.7
    with pytest.raises(CircuitOpen) as info:
        b.acquire()
    err = info.value
    assert err.breaker == "payments" and err.state is OPEN
    assert err.retry_after == pytest.approx(12.3)
    assert str(err) == (
        "circuit 'payments' is open (failure rate 60% over the last 20 calls); retry in 12.3s"
    )
    assert b.snapshot()["retry_after"] == pytest.approx(12.3)


def test_circuit_open_pickles() -> None:
    err = CircuitOpen("payments", 1.5, "a half-open probe failed")
    back = pickle.loads(pickle.dumps(err))
    assert (
        str(back)
        == str(err)
        == "circuit 'payments' is open (a half-open probe failed); retry in 1.5s"
    )


def test_open_turns_half_open_when_cool_down_is_over() -> None:
    b, clock, seen = make(SMALL, now=0.0)
    outcomes(b, "ffff")
    clock.now = 9.999
    assert b.state is OPEN
    assert b.snapshot()["state"] == "open"
    clock.now = 10.0
    assert b.snapshot()["state"] == "half_open"  # a read: does not make the transition
    assert len(seen) == 1
    clock.now = 12.5
    assert b.state is HALF_OPEN
    assert seen[1] == Transition("payments", OPEN, HALF_OPEN, 10.0, None, "cool-down of 10s over")
    assert b.state is HALF_OPEN and len(seen) == 2  # once


def test_acquire_makes_the_half_open_transition_itself() -> None:
    b, clock, seen = make(SMALL, now=0.0)
    outcomes(b, "ffff")
    clock.now = 11.0
    b.acquire()  # no state read in between: the first acquisition is a probe
    assert moves(seen) == [("closed", "open"), ("open", "half_open")]
    assert seen[1].at == 10.0


# ------------------------------------------------------------------------------ half-open


def half_open(config: BreakerConfig = SMALL) -> tuple[CircuitBreaker, Clock, list[Transition]]:
    b, clock, seen = make(config, now=0.0)
    outcomes(b, "f" * config.minimum_calls)
    clock.now = config.cool_down
    assert b.state is HALF_OPEN
    return b, clock, seen


def test_half_open_allows_only_the_probes() -> None:
    b, _, _ = half_open(BreakerConfig(window=4, minimum_calls=4, cool_down=10, probes=3))
    tickets = [b.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpen) as info:
        b.acquire()
    assert info.value.state is HALF_OPEN and info.value.retry_after == 10
    assert str(info.value) == (
        "circuit 'payments' is half-open (waiting for 3 of 3 probes); retry in 10.0s"
    )
    b.success(tickets[0])
    b.success(tickets[1])
    with pytest.raises(CircuitOpen, match="waiting for 1 of 3 probes"):
        b.acquire()  # 3 probes per half-open spell, not 3 at a time
    assert b.state is HALF_OPEN
    b.success(tickets[2])
    assert b.state is CLOSED


def test_all_probes_succeed_closes_with_a_fresh_window() -> None:
    b, clock, seen = half_open()
    clock.now = 15.0
    outcomes(b, "ss")
    assert b.state is CLOSED
    assert seen[-1] == Transition("payments", HALF_OPEN, CLOSED, 15.0, None, "2 probes succeeded")
    snap = b.snapshot()
    assert (snap["calls"], snap["failures"]) == (0, 0)
    outcomes(b, "fff")  # a fresh window: 3 calls are below minimum_calls
    assert b.state is CLOSED


def test_a_failed_probe_reopens_for_a_new_cool_down() -> None:
    b, clock, seen = half_open()
    first, second = b.acquire(), b.acquire()
    clock.now = 13.0
    b.failure(first)
    assert b.state is OPEN
    assert seen[-1] == Transition(
        "payments", HALF_OPEN, OPEN, 13.0, None, "a half-open probe failed"
    )
    b.success(second)  # the other probe reports late: stale, it cannot close the breaker
    assert b.state is OPEN
    clock.now = 22.9
    with pytest.raises(CircuitOpen) as info:
        b.acquire()
    assert str(info.value) == "circuit 'payments' is open (a half-open probe failed); retry in 0.1s"
    clock.now = 23.0
    assert b.state is HALF_OPEN


def test_a_cancelled_probe_is_handed_back() -> None:
    b, _, _ = half_open()
    first, second = b.acquire(), b.acquire()
    with pytest.raises(CircuitOpen):
        b.acquire()
    b.release(first)
    third = b.acquire()
    b.success(second)
    b.success(third)
    assert b.state is CLOSED


# ------------------------------------------------------------------------------ stale outcomes


def test_slow_call_from_closed_does_not_count_while_open_or_as_a_probe() -> None:
    b, clock, seen = make(SMALL, now=0.0)
    slow_ok, slow_bad = b.acquire(), b.acquire()
    outcomes(b, "ffff")
    assert b.state is OPEN
    b.failure(slow_bad)  # while open: ignored
    clock.now = 10.0
    assert b.state is HALF_OPEN
    probe = b.acquire()
    b.success(slow_ok)  # acquired while closed: not a probe
    b.failure(slow_bad)
    assert b.state is HALF_OPEN
    b.success(probe)
    assert b.state is HALF_OPEN  # 1 of 2 probes
    outcomes(b, "s")
    assert moves(seen) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_slow_failure_does_not_enter_the_next_closed_window() -> None:
    b, clock, _ = make(SMALL, now=0.0)
    slow = b.acquire()
    outcomes(b, "ffff")
    clock.now = 10.0
    outcomes(b, "ss")
    assert b.state is CLOSED
    b.failure(slow)
    assert b.snapshot()["failures"] == 0
    outcomes(b, "fsf")  # would be 3 of 4 with the stale failure
    assert b.state is CLOSED


def test_ticketless_outcomes_count_for_the_current_state() -> None:
    b, _, _ = make(SMALL)
    for _ in range(4):
        b.acquire()
        b.failure()
    assert b.state is OPEN
    b2, _, _ = half_open()
    b2.success()  # no probe was handed out: nothing to count
    b2.success()
    assert b2.state is HALF_OPEN
    b2.acquire()
    b2.success()
    b2.acquire()
    b2.success()
    assert b2.state is CLOSED


def test_reset_closes_and_makes_calls_in_flight_stale() -> None:
    b, clock, seen = make(SMALL, now=0.0)
    b.reset()
    assert seen == []  # closed -> closed is no transition
    slow = b.acquire()
    outcomes(b, "ffff")
    clock.now = 4.0
    b.reset()
    assert b.state is CLOSED
    assert seen[-1] == Transition("payments", OPEN, CLOSED, 4.0, None, "reset")
    b.failure(slow)
    assert b.snapshot()["calls"] == 0


# ------------------------------------------------------------------------------ call()


async def test_call_records_outcomes_and_fails_fast() -> None:
    b, _, _ = make(SMALL)
    calls: list[int] = []

    async def charge(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise ValueError("declined")
        return n * 2

    assert await b.call(charge, 21) == 42
    assert await b.call(lambda n: n + 1, 1) == 2  # plain functions too
    with pytest.raises(ValueError):
        await b.call(charge, -1)
    assert b.snapshot()["failures"] == 1
    with pytest.raises(ValueError):
        await b.call(charge, -2)  # 2 of 4
    assert b.state is OPEN
    with pytest.raises(CircuitOpen):
        await b.call(charge, 5)
    assert calls == [21, -1, -2]


async def test_call_cancelled_hands_the_probe_back() -> None:
    b, _, _ = half_open(BreakerConfig(window=4, minimum_calls=4, cool_down=10, probes=1))
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(b.call(hang))
    await started.wait()
    with pytest.raises(CircuitOpen):
        b.acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.call(lambda: "up") == "up"
    assert b.state is CLOSED


# ------------------------------------------------------------------------------ recovery


def test_dependency_down_then_recovers() -> None:
    """Payments is down until t=150, one call a second: the breaker opens on the failures,
    rejects without calling while open, lets a probe through after each cool-down (failing
    until the dependency is back) and closes once every probe has succeeded."""
    cfg = BreakerConfig(failure_rate=0.5, window=10, minimum_calls=5, cool_down=30, probes=2)
    clock = Clock(0.0)
    logged: list[Transition] = []
    registry = BreakerRegistry(clock=clock)
    registry.add_listener(logged.append)
    b = registry.get("payments", cfg)
    up_from, made, rejected = 150.0, [], 0

    def dependency() -> None:
        made.append(clock.now)
        if clock.now < up_from:
            raise ConnectionError("payments unavailable")

    while clock.now < 250:
        try:
            ticket = b.acquire()
        except CircuitOpen:
            rejected += 1
        else:
            try:
                dependency()
            except ConnectionError:
                b.failure(ticket)
            else:
                b.success(ticket)
        clock.now += 1.0

    assert [(str(t.from_state), str(t.to_state), t.at, t.reason) for t in logged] == [
        ("closed", "open", 4.0, "failure rate 100% over the last 5 calls"),
        ("open", "half_open", 34.0, "cool-down of 30s over"),
        ("half_open", "open", 34.0, "a half-open probe failed"),
        ("open", "half_open", 64.0, "cool-down of 30s over"),
        ("half_open", "open", 64.0, "a half-open probe failed"),
        ("open", "half_open", 94.0, "cool-down of 30s over"),
        ("half_open", "open", 94.0, "a half-open probe failed"),
        ("open", "half_open", 124.0, "cool-down of 30s over"),
        ("half_open", "open", 124.0, "a half-open probe failed"),
        ("open", "half_open", 154.0, "cool-down of 30s over"),
        ("half_open", "closed", 155.0, "2 probes succeeded"),
    ]
    assert made == [0, 1, 2, 3, 4, 34, 64, 94, 124, *range(154, 250)]
    assert rejected == 250 - len(made)
    assert b.state is CLOSED


# ------------------------------------------------------------------------------ registry


def test_registry_shares_one_breaker_per_name() -> None:
    registry = BreakerRegistry()
    a = registry.get("payments", BreakerConfig(window=10, minimum_calls=5))
    assert registry.get("payments") is a
    assert registry.get("payments", BreakerConfig(window=10, minimum_calls=5)) is a
    assert registry.get("search") is not a
    assert registry.get("search").config == BreakerConfig()
    assert [b.name for b in registry] == ["payments", "search"]
    assert [s["name"] for s in registry.snapshot()] == ["payments", "search"]


def test_registry_refuses_a_conflicting_config() -> None:
    registry = BreakerRegistry()
    registry.get("payments", BreakerConfig(cool_down=10))
    with pytest.raises(DefinitionError) as info:
        registry.get("payments", BreakerConfig(cool_down=60))
    assert info.value.path == "breakers.payments"
    message = str(info.value)
    assert "breaker 'payments' exists with" in message
    assert "cool_down=10" in message and "cool_down=60" in message


def test_registry_breakers_share_the_backend_state() -> None:
    backend, clock = LocalBackend(), Clock()
    one = BreakerRegistry(backend=backend, clock=clock)
    two = BreakerRegistry(backend=backend, clock=clock)  # e.g. two engines, one store
    outcomes(one.get("payments", SMALL), "ffff")
    assert two.get("payments", SMALL).state is OPEN
    record = backend.load("payments")
    assert record is not None and record.state is OPEN
    record.state = CLOSED  # a copy
    assert one.get("payments").state is OPEN
    assert backend.load("nothing") is None


def test_listeners_get_every_transition_exactly_once() -> None:
    clock = Clock(0.0)
    registry = BreakerRegistry(clock=clock)
    first: list[Transition] = []
    second: list[Transition] = []
    registry.add_listener(first.append)
    registry.add_listener(second.append)
    a, b = registry.get("a", SMALL), registry.get("b", SMALL)
    outcomes(a, "ffff")
    outcomes(b, "ssssff")
    clock.now = 10
    assert a.state is HALF_OPEN
    assert a.state is HALF_OPEN
    outcomes(a, "ss")
    got = [(t.breaker, str(t.from_state), str(t.to_state)) for t in first]
    assert got == [
        ("a", "closed", "open"),
        ("b", "closed", "open"),
        ("a", "open", "half_open"),
        ("a", "half_open", "closed"),
    ]
    assert second == first


def test_a_raising_listener_is_logged_and_contained() -> None:
    clock = Clock(0.0)
    registry = BreakerRegistry(clock=clock)
    after: list[Transition] = []

    def broken(t: Transition) -> None:
        raise RuntimeError("observer bug")

    registry.add_listener(broken)
    registry.add_listener(after.append)
    b = registry.get("payments", SMALL)
    own = CircuitBreaker("own", SMALL, clock=clock, on_transition=broken)
    with capture_logs() as logs:
        outcomes(b, "ffff")
        outcomes(own, "ffff")
    assert b.state is OPEN and own.state is OPEN
    assert len(after) == 1
    failed = [e for e in logs if e["event"] == "breaker_listener_failed"]
    assert [(e["breaker"], e["to_state"], e["log_level"]) for e in failed] == [
        ("payments", "open", "error"),
        ("own", "open", "error"),
    ]


# ------------------------------------------------------------------------------ property


class Model:
    """The breaker as plainly as it can be said: a list for the window, an epoch per state."""

    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.state = "closed"
        self.epoch = 0
        self.window: list[bool] = []  # True = failed
        self.until = 0.0
        self.handed = self.succeeded = 0
        self.log: list[tuple[str, str, float]] = []

    def go(self, to: str, at: float) -> None:
        self.log.append((self.state, to, at))
        self.state, self.epoch, self.window = to, self.epoch + 1, []
        self.handed = self.succeeded = 0

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.until:
            self.go("half_open", self.until)

    def acquire(self, now: float) -> int | None:
        self.tick(now)
        if self.state == "open" or (self.state == "half_open" and self.handed == self.cfg.probes):
            return None
        if self.state == "half_open":
            self.handed += 1
        return self.epoch

    def finish(self, epoch: int, ok: bool | None, now: float) -> None:
        if epoch != self.epoch or (ok is None and self.state == "closed"):
            return
        if self.state == "closed":
            self.window = [*self.window, not ok][-self.cfg.window :]
            rate = Fraction(sum(self.window), len(self.window))
            if len(self.window) >= self.cfg.minimum_calls and rate >= Fraction(
                str(self.cfg.failure_rate)
            ):
                self.go("open", now)
                self.until = now + self.cfg.cool_down
        elif self.state == "half_open":
            if ok is None:
                self.handed -= 1
            elif not ok:
                self.go("open", now)
                self.until = now + self.cfg.cool_down
            else:
                self.succeeded += 1
                if self.succeeded == self.cfg.probes:
                    self.go("closed", now)


configs = st.builds(
    lambda window, least, rate, cool, probes: BreakerConfig(
        failure_rate=rate,
        window=window,
        minimum_calls=min(least, window),
        cool_down=cool,
        probes=probes,
    ),
    window=st.integers(1, 6),
    least=st.integers(1, 6),
    rate=st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.7, 0.75, 0.9, 1.0]),
    cool=st.sampled_from([0.0, 1.0, 2.5]),
    probes=st.integers(1, 3),
)
call = st.tuples(st.just("call"), st.booleans())  # acquire, and report at once if admitted
finish = st.tuples(st.just("finish"), st.integers(0, 10), st.sampled_from([True, False, None]))
ops = st.lists(
    st.one_of(
        call,
        call,
        call,
        st.tuples(st.just("acquire"), st.integers(1, 3)),  # calls left in flight
        finish,
        finish,
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0])),
        st.tuples(st.just("look"), st.just(None)),  # read .state: makes a due half-open happen
    ),
    max_size=100,
)


def admit(b: CircuitBreaker, model: Model, now: float) -> int | None:
    """Acquire on both; they must agree on admitting, and on why not."""
    expected = model.acquire(now)
    try:
        ticket = b.acquire()
    except CircuitOpen as err:
        assert expected is None
        assert str(err.state) == model.state
        if model.state == "open":
            assert err.retry_after == model.until - now > 0
        else:  # half-open, every probe out: a hint
            assert err.retry_after == model.cfg.cool_down
        return None
    assert expected == ticket  # both count state changes from 0
    return ticket


@settings(max_examples=1000, deadline=None)
@given(cfg=configs, script=ops)
def test_matches_the_reference_model(cfg: BreakerConfig, script: list[tuple]) -> None:
    b, clock, seen = make(cfg, now=0.0)
    model = Model(cfg)
    held: list[int] = []  # tickets of calls in flight
    report = {True: b.success, False: b.failure, None: b.release}
    for op in script:
        if op[0] == "call":
            ticket = admit(b, model, clock.now)
            if ticket is not None:
                model.finish(ticket, op[1], clock.now)
                report[op[1]](ticket)
        elif op[0] == "acquire":
            for _ in range(op[1]):
                ticket = admit(b, model, clock.now)
                if ticket is not None:
                    held.append(ticket)
        elif op[0] == "finish" and held:
            ticket = held.pop(op[1] % len(held))
            model.finish(ticket, op[2], clock.now)
            report[op[2]](ticket)
        elif op[0] == "advance":
            clock.now += op[1]
        elif op[0] == "look":
            model.tick(clock.now)
            assert str(b.state) == model.state
        snap = b.snapshot()  # a read that makes no transition
        due = model.state == "open" and clock.now >= model.until
        assert snap["state"] == ("half_open" if due else model.state)
        assert (snap["calls"], snap["failures"]) == (len(model.window), sum(model.window))
    assert [(str(t.from_state), str(t.to_state), t.at) for t in seen] == model.log
