"""SEQUENTIAL: call a handler with the state, commit its update; retry per policy."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from cadenza.errors import CadenzaError, StepFailed
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
    retries = policy.retries if policy.retries is not None else run.ir.config.max_retries
    attempt = run.progress.attempts.get(path, 0)
    while True:
        attempt += 1
        run.note(EventType.STEP_STARTED, path, scope=scope, attempt=attempt)
        started = time.time()
        ctx = context(run, scope, path, step.name, attempt)
        try:
            result = await call_handler(run, step.handler, dict(scope.state), ctx, policy.timeout)
            update = check_update(run, result)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            error_type = "Timeout" if timed_out else type(exc).__name__
            message = f"timed out after {policy.timeout:g}s" if timed_out else first_line(exc)
            retry = attempt <= retries and not isinstance(exc, CadenzaError)
            await run.commit(
                EventType.STEP_FAILED,
                path,
                scope=scope,
                attempt=attempt,
                data={
                    "error": message,
                    "error_type": error_type,
                    "retry": retry,
                    "started_at": started,
                },
            )
            if retry:
                if policy.retry_delay:
                    await asyncio.sleep(policy.retry_delay * 2 ** (attempt - 1))
                continue
            raise StepFailed(path, message, error_type=error_type) from exc
        data: dict[str, object] = {"started_at": started}
        if update:
            data["update"] = update
        await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=attempt, data=data)
        return None
