"""How an engine drives one run: a fenced execution of its graph to the end (or until it
waits for something from outside, or has nothing to do but sleep), the final status, rollback
when a step failed, and the release of its lease with the time it next needs a worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from cadenza.core.errors import StepFailed, StoreError, Suspended
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.compensation import needs_rollback, roll_back
from cadenza.runtime.ownership import FencedStore, next_wake
from cadenza.runtime.progress import Progress
from cadenza.runtime.run import RunExecution
from cadenza.runtime.sleeps import Sleeps
from cadenza.store.base import LeaseLost

if TYPE_CHECKING:
    from cadenza.graph.ir import WorkflowIR
    from cadenza.runtime.engine import Engine

_log = structlog.get_logger("cadenza.engine")

#: Seconds before a run whose step the store refused (not an outage: that is waited out) is
#: tried again.
STORE_ERROR_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: RunId
    workflow: str
    status: WorkflowStatus
    state: dict[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is WorkflowStatus.COMPLETED


class DriveMixin:
    """Part of :class:`Engine`: executing runs."""

    def _launch(
        self: Engine, ir: WorkflowIR, run_id: RunId, progress: Progress, deadline: float | None
    ) -> None:
        self._start_execution(self._execution(ir, run_id, progress), deadline)

    def _execution(self: Engine, ir: WorkflowIR, run_id: RunId, progress: Progress) -> RunExecution:
        """A run ready to execute under the lease epoch this engine holds for it."""
        fenced: Any = FencedStore(self.store, self._epochs[run_id], self._outage)
        return RunExecution(
            run_id=run_id,
            ir=ir,
            store=fenced,
            progress=progress,
            observers=self.observers,
            thread_pool=self._threads,
            default_retry=self.retry,
            bulkheads=self.bulkheads,
            breakers=self.breakers,
            sleeps=Sleeps(self.short_sleep, lambda due: self._suspend(run_id, due)),
        )

    def _start_execution(self: Engine, execution: RunExecution, deadline: float | None) -> None:
        run_id = execution.run_id
        task = asyncio.get_running_loop().create_task(self._drive(execution, deadline))
        self._active[run_id] = task
        self._executions[run_id] = execution

        def finished(_task: asyncio.Task[RunResult]) -> None:
            self._active.pop(run_id, None)
            self._executions.pop(run_id, None)
            self._lost.discard(run_id)
            self._run_finished(run_id)

        task.add_done_callback(finished)
        self._start_background()

    async def _drive(self: Engine, run: RunExecution, deadline: float | None) -> RunResult:
        run_id = run.run_id
        try:
            status, error = await self._drive_to_end(run, deadline)
        except LeaseLost as exc:
            _log.warning("lease_lost", run_id=run_id, error=str(exc))
            progress = run.progress
            return RunResult(run_id, run.ir.name, progress.status, progress.state, str(exc))
        except StoreError as exc:  # refused (not away: that is retried); try it again later
            await self._release(run_id, wake_at=time.time() + STORE_ERROR_BACKOFF)
            progress = run.progress
            return RunResult(run_id, run.ir.name, progress.status, progress.state, str(exc))
        due = self._parked.pop(run_id, None)
        if due is not None:  # asleep: due when its sleep ends (or its deadline passes)
            wake = due if deadline is None else min(due, deadline)
            await self._release(run_id, wake_at=wake)
            _log.debug("run_suspended", run_id=run_id, until=wake)
            if not self._closing:
                self._alarms.set(run_id, wake)
        else:
            wake = next_wake(run.progress, suspended_at=self._quiet.pop(run_id, None))
            await self._release(run_id, wake_at=wake)
        return RunResult(run_id, run.ir.name, status, run.progress.state, error)

    def _suspend(self: Engine, run_id: RunId, due: float) -> None:
        """Stop executing a run that has nothing to do but sleep until ``due`` (called by its
        :class:`Sleeps`): its task ends, releasing it with that wake-up time."""
        task = self._active.get(run_id)
        if task is None or self._closing or run_id in self._lost:
            return
        if run_id in self._cancel_reasons:
            return  # being cancelled: that ends it
        self._parked[run_id] = due
        task.cancel()

    async def _drive_to_end(
        self: Engine, run: RunExecution, deadline: float | None
    ) -> tuple[WorkflowStatus, str | None]:
        try:
            return await self._execute(run, deadline)
        except asyncio.CancelledError:
            due = self._parked.pop(run.run_id, None)
            if run.run_id in self._lost:
                raise LeaseLost(run.run_id, self._epochs.get(run.run_id, 0), None) from None
            reason = self._cancel_reasons.pop(run.run_id, None)
            if reason is None:
                if due is not None and not self._closing:
                    _uncancel()
                    self._parked[run.run_id] = due
                    return run.progress.status, None  # suspended: see _drive
                await self._release(run.run_id)  # the engine is closing: the run stays due
                raise
            await run.set_status(WorkflowStatus.CANCELLED, reason=reason)
            return WorkflowStatus.CANCELLED, reason
        except StoreError as exc:  # a LeaseLost too: the caller abandons the run
            if isinstance(exc, LeaseLost):
                raise
            _log.error("run_store_error", run_id=run.run_id, error=str(exc))
            raise
        except Exception as exc:
            error = f"internal error: {type(exc).__name__}: {exc}"
            _log.exception("run_crashed", run_id=run.run_id)
            with contextlib.suppress(Exception):
                await run.set_status(WorkflowStatus.FAILED, reason=error)
            return WorkflowStatus.FAILED, error

    async def _execute(
        self: Engine, run: RunExecution, deadline: float | None
    ) -> tuple[WorkflowStatus, str | None]:
        """Run the graph (or finish an interrupted rollback); return the final status."""
        if run.progress.status is WorkflowStatus.ROLLBACK:
            return await self._fail(run, run.progress.reason or "rolled back")
        if run.progress.status in (WorkflowStatus.INITIALIZING, WorkflowStatus.WAITING_APPROVAL):
            await run.set_status(WorkflowStatus.RUNNING)
        self._quiet.pop(run.run_id, None)
        remaining = deadline - time.time() if deadline is not None else None
        try:
            async with asyncio.timeout(remaining):
                await run.run_graph(run.ir.graph, run.top, "")
        except TimeoutError:
            return await self._fail(
                run,
                f"workflow timed out after {run.ir.config.timeout:g}s (configuration 'timeout')",
            )
        except StepFailed as exc:
            return await self._fail(run, str(exc))
        except Suspended as exc:
            # Nothing more can run until a decision or signal arrives: stop holding the run.
            if exc.approval:
                await run.set_status(WorkflowStatus.WAITING_APPROVAL, reason=str(exc))
                return WorkflowStatus.WAITING_APPROVAL, None
            self._quiet[run.run_id] = run.progress.seq
            return WorkflowStatus.RUNNING, None
        await run.set_status(WorkflowStatus.COMPLETED)
        return WorkflowStatus.COMPLETED, None

    async def _fail(self: Engine, run: RunExecution, reason: str) -> tuple[WorkflowStatus, str]:
        """FAILED, after compensating completed steps (ROLLBACK) when any declared one."""
        if needs_rollback(run):
            if run.progress.status is not WorkflowStatus.ROLLBACK:
                await run.set_status(WorkflowStatus.ROLLBACK, reason=reason)
            outcome = await roll_back(run)
            reason = f"{reason} (rolled back: {outcome.summary()})"
        await run.set_status(WorkflowStatus.FAILED, reason=reason)
        return WorkflowStatus.FAILED, reason


def _uncancel() -> None:
    """Take back the cancellation this task was sent to stop it (it ends normally instead),
    so that timeouts later in the task still work."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
