"""Circuit breakers guarding steps, across runs of one engine: a dependency goes down, the
breaker opens and steps fail fast (or fall back), the dependency recovers, probes close it."""

from __future__ import annotations

from typing import TypedDict

import pytest

from cadenza import (
    BreakerConfig,
    DefinitionError,
    Engine,
    MemoryStore,
    RetryPolicy,
    Workflow,
    WorkflowStatus,
)
from cadenza.core.clock import ManualClock


class S(TypedDict, total=False):
    stock: int
    source: str


def test_fallback_needs_a_breaker() -> None:
    wf = Workflow("nofallback", state=S)
    with pytest.raises(DefinitionError, match="name the breaker"):
        wf.task(lambda s: None, name="x", fallback=lambda s: None)


async def test_dependency_down_then_recovering() -> None:
    up = False
    calls = 0

    async def check_stock(state: S) -> S:
        nonlocal calls
        calls += 1
        if not up:
            raise ConnectionError("inventory service unreachable")
        return {"stock": 7, "source": "live"}

    def cached_stock(state: S) -> S:
        return {"stock": 0, "source": "cache"}

    strict = Workflow("strict", state=S)
    strict.task(check_stock, breaker="inventory")
    lenient = Workflow("lenient", state=S)
    lenient.task(check_stock, name="check", breaker="inventory", fallback=cached_stock)

    config = BreakerConfig(window=4, minimum_calls=2, failure_rate=0.5, cool_down=0.2, probes=1)
    clock = ManualClock()
    async with Engine(MemoryStore(), breakers={"inventory": config}, clock=clock) as engine:
        first = await engine.run(strict, {})
        second = await engine.run(strict, {})
        assert calls == 2 and not first.ok and not second.ok
        opened = await engine.store.read_events(second.run_id)
        assert [(e.data["from"], e.data["to"]) for e in opened if e.type == "breaker"] == [
            ("closed", "open")
        ]

        fast = await engine.run(strict, {})
        assert calls == 2, "the open breaker did not let the call through"
        assert fast.status is WorkflowStatus.FAILED
        assert "circuit 'inventory' is open" in (fast.error or "")

        degraded = await engine.run(lenient, {})
        assert degraded.ok and degraded.state == {"stock": 0, "source": "cache"}
        assert calls == 2

        up = True
        clock.advance(0.25)  # past the cool-down
        healed = await engine.run(strict, {})
        assert healed.ok and healed.state["source"] == "live"
        events = await engine.store.read_events(healed.run_id)
        assert [(e.data["from"], e.data["to"]) for e in events if e.type == "breaker"] == [
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
        assert engine.breakers.get("inventory").state == "closed"


async def test_an_open_circuit_is_retried_after_its_cool_down() -> None:
    """Failure 1 opens the breaker; the immediate retry meets the open circuit and waits
    for the cool-down; the probe after it succeeds."""
    calls = 0

    async def flaky(state: S) -> S:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return {"source": "live"}

    config = BreakerConfig(window=2, minimum_calls=1, failure_rate=1.0, cool_down=0.1, probes=1)
    wf = Workflow("patient", state=S)
    wf.task(flaky, breaker="svc", retry=RetryPolicy(max_attempts=3, initial_delay=0, jitter=0))
    clock = ManualClock()
    async with Engine(MemoryStore(), breakers={"svc": config}, clock=clock) as engine:
        run_id = await engine.start(wf, {})
        await clock.until_waiting(2)  # the run's deadline, and the wait for the cool-down
        clock.advance(0.1)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(result.run_id)
    assert result.ok and calls == 2
    failures = [e for e in events if e.type == "step_failed"]
    assert [f.data["error_type"] for f in failures] == ["ConnectionError", "CircuitOpen"]
    wait = failures[1].data["retry_at"] - failures[1].ts
    assert wait >= 0.09, "the attempt that met the open circuit waited for its cool-down"
