from __future__ import annotations

import asyncio
import random
from typing import TypedDict

import pytest
from tests.probes import Peak

from cadenza import (
    Bulkhead,
    DefinitionError,
    Engine,
    ExecutionContext,
    MemoryStore,
    NonRetryableError,
    RetryPolicy,
    Workflow,
    WorkflowConfiguration,
    WorkflowStatus,
)
from cadenza.core.clock import ManualClock


class S(TypedDict, total=False):
    attempts: list[int]


def test_exponential_backoff_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=1, backoff=2, max_delay=5, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_spreads_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay=10, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(1000)]
    assert 8 <= min(delays) < 8.5 and 11.5 < max(delays) <= 12
    assert len(set(delays)) > 900


def test_which_errors_retry() -> None:
    class Fatal(Exception):
        pass

    policy = RetryPolicy(
        max_attempts=3, retry_on=(ConnectionError, TimeoutError), never_retry=(Fatal,)
    )
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(TimeoutError(), 2)
    assert not policy.should_retry(ConnectionError(), 3), "no attempts left"
    assert not policy.should_retry(ValueError(), 1), "not a retried type"
    assert not policy.should_retry(NonRetryableError(), 1)
    assert not RetryPolicy(max_attempts=3, never_retry=(Fatal,)).should_retry(Fatal(), 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff": 0.5}, "backoff"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_policy_validation_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(DefinitionError, match=f"retry.{field}"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def flaky(fail_times: int, error: type[Exception] = ConnectionError):
    async def step(state: S, ctx: ExecutionContext) -> S:
        if ctx.attempt <= fail_times:
            raise error(f"attempt {ctx.attempt} failed")
        return {"attempts": [ctx.attempt]}

    return step


async def test_each_attempt_is_an_event_with_its_wait() -> None:
    wf = Workflow("retrying", state=S)
    policy = RetryPolicy(max_attempts=4, initial_delay=0.02, backoff=2, jitter=0)
    wf.task(flaky(2), name="call", retry=policy)
    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        run_id = await engine.start(wf, {})
        for wait in (0.02, 0.04):
            await clock.until_waiting(2)  # the run's deadline, and the backoff
            clock.advance(wait)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(result.run_id)
    assert result.ok and result.state["attempts"] == [3]
    failed = [e for e in events if e.type == "step_failed"]
    assert [e.attempt for e in failed] == [1, 2]
    waits = [e.data["retry_at"] - e.ts for e in failed]
    assert waits == [pytest.approx(0.02), pytest.approx(0.04)]
    (done,) = [e for e in events if e.type == "step_completed"]
    assert done.attempt == 3 and done.data["started_at"] >= failed[1].data["retry_at"]


async def test_non_retryable_error_fails_at_once() -> None:
    wf = Workflow("fatal", state=S)
    wf.task(
        flaky(5, NonRetryableError), name="call", retry=RetryPolicy(max_attempts=5, initial_delay=0)
    )
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.status is WorkflowStatus.FAILED
    assert [e.attempt for e in events if e.type == "step_failed"] == [1]


async def test_a_timeout_is_its_own_failure_type_and_is_retried() -> None:
    calls = 0

    async def slow_once(state: S) -> S:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return {"attempts": [calls]}

    wf = Workflow("timeouts", state=S)
    wf.task(slow_once, timeout=0.05, retry=RetryPolicy(max_attempts=2, initial_delay=0))
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.ok
    (failure,) = [e for e in events if e.type == "step_failed"]
    assert failure.data["error_type"] == "Timeout" and failure.data["retry"] is True


async def test_workflow_max_retries_and_engine_default() -> None:
    wf = Workflow("defaults", state=S, config=WorkflowConfiguration(max_retries=2))
    wf.task(flaky(2), name="call")
    fast = RetryPolicy(initial_delay=0, jitter=0)
    async with Engine(MemoryStore(), retry=fast) as engine:
        assert (await engine.run(wf, {})).ok, "2 retries from the workflow configuration"
    strict = Workflow("strict", state=S)
    strict.task(flaky(1), name="call")
    async with Engine(MemoryStore(), retry=RetryPolicy(max_attempts=2, initial_delay=0)) as engine:
        assert (await engine.run(strict, {})).ok, "the engine's default policy applies"
    async with Engine(MemoryStore()) as engine:
        assert not (await engine.run(strict, {})).ok, "no retries unless asked for"


def test_retries_and_retry_policy_are_exclusive() -> None:
    wf = Workflow("both", state=S)
    with pytest.raises(DefinitionError, match="give retries or retry=RetryPolicy"):
        wf.task(flaky(0), name="x", retries=1, retry=RetryPolicy(max_attempts=2))


async def test_bulkhead_limits_calls_across_runs() -> None:
    probe = Peak()

    async def call_payments(state: S) -> None:
        await probe.busy(state)

    payments = Bulkhead("payments", 2)
    first = Workflow("checkout", state=S)
    first.task(call_payments, bulkhead=payments)
    second = Workflow("refunds", state=S)
    second.task(call_payments, name="refund", bulkhead=Bulkhead("payments", 2))
    async with Engine(MemoryStore()) as engine:
        results = await asyncio.gather(
            *(engine.run(first if i % 2 else second, {}) for i in range(10))
        )
    assert all(r.ok for r in results)
    assert probe.peak == 2, "10 runs of two workflows shared 2 slots"


async def test_one_bulkhead_name_one_limit() -> None:
    async def noop(state: S) -> None:
        return None

    a = Workflow("a", state=S)
    a.task(noop, bulkhead=Bulkhead("db", 2))
    b = Workflow("b", state=S)
    b.task(noop, bulkhead=Bulkhead("db", 3))
    async with Engine(MemoryStore()) as engine:
        assert (await engine.run(a, {})).ok
        result = await engine.run(b, {})
    assert result.status is WorkflowStatus.FAILED
    assert "bulkhead 'db' is declared with limit 3 here and 2 elsewhere" in (result.error or "")
