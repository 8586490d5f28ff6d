"""Saga compensation: when a run fails after steps with a ``compensate`` handler completed,
their compensations run in reverse completion order, each durable and retried by its step's
policy. A restart during the rollback resumes it: compensations already recorded are not
run again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadenza.core.events import EventType
from cadenza.runtime.calls import call_handler, check_update, context
from cadenza.runtime.progress import COMPENSATE
from cadenza.runtime.scheduler import first_line

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


@dataclass(slots=True)
class RollbackOutcome:
    compensated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        if self.compensated:
            parts.append(f"compensated {', '.join(self.compensated)}")
        if self.failed:
            parts.append(f"compensation failed for {', '.join(self.failed)}")
        return "; ".join(parts) or "nothing to compensate"


def needs_rollback(run: RunExecution) -> bool:
    return any(p not in run.progress.compensations for p in run.progress.compensable)


async def roll_back(run: RunExecution) -> RollbackOutcome:
    """Compensate every completed compensable step, newest first; never raises for a failed
    compensation (it is recorded and the others still run)."""
    outcome = RollbackOutcome()
    for path in reversed(run.progress.compensable):
        recorded = run.progress.compensations.get(path)
        if recorded is None:
            recorded = await _compensate(run, path)
        (outcome.compensated if recorded else outcome.failed).append(path)
    return outcome


async def _compensate(run: RunExecution, path: str) -> bool:
    step = run.ir.graph.find(path)
    assert step.compensate is not None
    retry = step.policy.retry or run.default_retry
    cpath = path + COMPENSATE
    attempt = run.progress.attempts.get(cpath, 0)
    retry_at = run.progress.retry_at.get(cpath)
    while True:
        await run.sleeps.until(retry_at)
        attempt += 1
        ctx = context(run, run.top, cpath, step.name, attempt)
        try:
            result = await call_handler(
                run, step.compensate, dict(run.top.state), ctx, step.policy.timeout
            )
            update = check_update(run, result)
        except Exception as exc:
            data: dict[str, Any] = {
                "error": first_line(exc),
                "error_type": type(exc).__name__,
                "retry": retry.should_retry(exc, attempt),
            }
            if data["retry"]:
                retry_at = data["retry_at"] = run.clock.now() + retry.delay(attempt)
            await run.commit(EventType.COMPENSATION_FAILED, cpath, attempt=attempt, data=data)
            if data["retry"]:
                continue
            return False
        await run.commit(
            EventType.COMPENSATION_COMPLETED,
            cpath,
            attempt=attempt,
            data={"update": update} if update else {},
        )
        return True
