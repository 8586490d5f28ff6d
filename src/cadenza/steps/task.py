"""SEQUENTIAL: call a handler with the state, commit its update; retry per policy, with the
time of the next attempt in the log so that a restart resumes the backoff."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from cadenza.errors import StepFailed
from cadenza.graph.ir import Step
from cadenza.runtime.events import EventType
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope
from cadenza.steps._call import call_handler, check_update, context

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_task(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.handler is not None
    policy = step.policy
    retry = policy.retry or run.default_retry
    attempt = run.progress.attempts.get(path, 0)
    await _sleep_until(run.progress.retry_at.get(path))
    while True:
        attempt += 1
        run.note(EventType.STEP_STARTED, path, scope=scope, attempt=attempt)
        started = time.time()
        ctx = context(run, scope, path, step.name, attempt)
        try:
            result = await call_handler(
                run, step.handler, dict(scope.state), ctx, policy.timeout, policy.bulkhead
            )
            update = check_update(run, result)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            error_type = "Timeout" if timed_out else type(exc).__name__
            message = f"timed out after {policy.timeout:g}s" if timed_out else first_line(exc)
            data: dict[str, Any] = {
                "error": message,
                "error_type": error_type,
                "retry": retry.should_retry(exc, attempt),
                "started_at": started,
            }
            if data["retry"]:
                data["retry_at"] = time.time() + retry.delay(attempt)
            await run.commit(EventType.STEP_FAILED, path, scope=scope, attempt=attempt, data=data)
            if data["retry"]:
                await _sleep_until(data["retry_at"])
                continue
            raise StepFailed(path, message, error_type=error_type) from exc
        done: dict[str, Any] = {"started_at": started}
        if update:
            done["update"] = update
        if step.compensate is not None:
            done["compensable"] = True
        await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=attempt, data=done)
        return None


async def _sleep_until(when: float | None) -> None:
    if when is not None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
