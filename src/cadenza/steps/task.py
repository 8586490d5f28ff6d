"""SEQUENTIAL: call a handler with the state, commit its update; retry per policy, with the
time of the next attempt in the log so that a restart resumes the backoff. A step guarded by
a circuit breaker fails fast (or takes its fallback) while the breaker is open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cadenza.core.context import ExecutionContext
from cadenza.core.errors import CadenzaError, StepFailed
from cadenza.core.events import EventType
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import Step
from cadenza.resilience.breaker import CircuitOpen
from cadenza.resilience.retry import RetryPolicy
from cadenza.runtime.calls import call_handler, check_update, context, evaluate
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


#: One attempt of a step: the update it produced and extra data for its completion event.
Attempt = Callable[[ExecutionContext], Awaitable[tuple[dict[str, Any] | None, dict[str, Any]]]]
#: Adds what a step kind knows about a failure to its event data.
Describe = Callable[[Exception, dict[str, Any]], None]


async def execute_task(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.handler is not None
    if step.guard and not await _guard_holds(run, step, scope, path):
        return None

    async def attempt(ctx: ExecutionContext) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        update, used_fallback = await _attempt(run, step, scope, ctx)
        if used_fallback:
            return update, {"fallback": True}
        return update, {"compensable": True} if step.compensate is not None else {}

    await run_attempts(run, step, scope, path, attempt)
    return None


async def run_attempts(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    attempt: Attempt,
    describe: Describe | None = None,
) -> None:
    """Attempt a step until it succeeds or its retry policy gives up: each attempt ends in a
    stored ``step_failed`` (with the time of the next attempt, so a restart resumes the wait)
    or ``step_completed``."""
    retry = step.policy.retry or run.default_retry
    number = run.progress.attempts.get(path, 0)
    await run.sleeps.until(run.progress.retry_at.get(path))
    while True:
        number += 1
        run.announce(EventType.STEP_STARTED, path, scope=scope, attempt=number)
        started = run.clock.now()
        try:
            update, extra = await attempt(context(run, scope, path, step.name, number))
        except Exception as exc:
            data = _failure(exc, step, retry, number, started, run.clock.now())
            if describe is not None:
                describe(exc, data)
            await run.commit(EventType.STEP_FAILED, path, scope=scope, attempt=number, data=data)
            if data["retry"]:
                await run.sleeps.until(data["retry_at"])
                continue
            raise StepFailed(path, data["error"], error_type=data["error_type"]) from exc
        done: dict[str, Any] = {"started_at": started, **extra}
        if update:
            done["update"] = update
        await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=number, data=done)
        return


async def _attempt(
    run: RunExecution, step: Step, scope: Scope, ctx: ExecutionContext
) -> tuple[dict[str, Any] | None, bool]:
    """One call of the handler (or of the fallback, while the breaker is open)."""
    assert step.handler is not None
    policy = step.policy
    state = dict(scope.state)
    if policy.breaker is None:
        result = await call_handler(run, step.handler, state, ctx, policy.timeout, policy.bulkhead)
        return check_update(run, result), False
    breaker = run.breakers.get(policy.breaker)
    try:
        ticket = breaker.acquire()
    except CircuitOpen:
        run.note_breaker_changes(ctx.path, scope)
        if step.fallback is None:
            raise
        result = await call_handler(run, step.fallback, state, ctx, policy.timeout)
        return check_update(run, result), True
    try:
        result = await call_handler(run, step.handler, state, ctx, policy.timeout, policy.bulkhead)
    except asyncio.CancelledError:
        breaker.release(ticket)
        raise
    except Exception:
        breaker.failure(ticket)
        run.note_breaker_changes(ctx.path, scope)
        raise
    breaker.success(ticket)
    run.note_breaker_changes(ctx.path, scope)
    return check_update(run, result), False


def _failure(
    exc: Exception, step: Step, retry: RetryPolicy, attempt: int, started: float, now: float
) -> dict[str, Any]:
    timed_out = isinstance(exc, TimeoutError)
    circuit_open = isinstance(exc, CircuitOpen)
    data: dict[str, Any] = {
        "error": f"timed out after {step.policy.timeout:g}s" if timed_out else first_line(exc),
        "error_type": "Timeout" if timed_out else type(exc).__name__,
        # An open circuit is worth another attempt (once it may be closed again).
        "retry": attempt < retry.max_attempts if circuit_open else retry.should_retry(exc, attempt),
        "started_at": started,
    }
    if data["retry"]:
        wait = retry.delay(attempt)
        if isinstance(exc, CircuitOpen):
            wait = max(wait, exc.retry_after)
        data["retry_at"] = now + wait
    return data


async def _guard_holds(run: RunExecution, step: Step, scope: Scope, path: str) -> bool:
    """Evaluate the step's guard; when it does not hold, record the skip (durably: a resumed
    run must not evaluate it again) and say so."""
    ctx = context(run, scope, path, step.name, 1)
    try:
        results = [bool(await evaluate(c, scope.state, ctx)) for c in step.guard]
    except CadenzaError as exc:
        raise StepFailed(path, str(exc), error_type=type(exc).__name__) from exc
    except Exception as exc:
        raise StepFailed(path, first_line(exc), error_type=type(exc).__name__) from exc
    holds = all(results) if step.guard_all else any(results)
    if not holds:
        shown = [c.source if isinstance(c, Expression) else "predicate" for c in step.guard]
        joiner = " and " if step.guard_all else " or "
        reason = f"conditions not met: {joiner.join(shown)}"
        await run.commit(
            EventType.STEP_SKIPPED, path, scope=scope, data={"reason": reason, "guard": True}
        )
    return holds
