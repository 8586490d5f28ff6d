"""How an engine drives one run: a fenced execution of its graph to the end (or until it
waits for something from outside, or has nothing to do but sleep), the final status, rollback
when a step failed, and the release of its lease with the time it next needs a worker."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog

from cadenza.core.clock import Clock
from cadenza.core.errors import StepFailed, StoreError, Suspended
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.graph.ir import WorkflowIR
from cadenza.observe.base import Observer
from cadenza.resilience.breaker import Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import RetryPolicy
from cadenza.runtime.alarms import Sleepers
from cadenza.runtime.compensation import needs_rollback, roll_back
from cadenza.runtime.heartbeat import Heartbeat
from cadenza.runtime.held import HeldRun, HeldRuns
from cadenza.runtime.kinds import StepKinds
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.outages import Outage
from cadenza.runtime.ownership import FencedStore
from cadenza.runtime.progress import Progress
from cadenza.runtime.results import RunResult
from cadenza.runtime.run import RunExecution
from cadenza.runtime.sleeps import Sleeps
from cadenza.runtime.wakeups import Wakeups
from cadenza.store.base import LeaseLost, Store

_log = structlog.get_logger("cadenza.engine")

#: Seconds before a run whose step the store refused (not an outage: that is waited out) is
#: tried again.
STORE_ERROR_BACKOFF = 5.0


@dataclass(slots=True)
class RunSettings:
    """What every run of one engine shares: the step kinds it executes, its clock, observers,
    thread pool, default retry policy, bulkheads and breakers, the store's health, and the
    shortest sleep that suspends a run."""

    kinds: StepKinds
    clock: Clock
    outage: Outage
    observers: tuple[Observer, ...]
    threads: Executor
    retry: RetryPolicy
    bulkheads: BulkheadRegistry
    breakers: Breakers
    short_sleep: float


class RunDriver:
    """Starts runs held here and drives each, in its own task, until it stops."""

    def __init__(
        self,
        settings: RunSettings,
        store: Store,
        held: HeldRuns,
        leases: LeaseKeeper,
        heartbeat: Heartbeat,
        sleepers: Sleepers,
        wakeups: Wakeups,
    ) -> None:
        self.settings = settings
        self.store = store
        self.held = held
        self.leases = leases
        self.heartbeat = heartbeat
        self.sleepers = sleepers
        self.wakeups = wakeups

    def execution(
        self, ir: WorkflowIR, run_id: RunId, progress: Progress, epoch: int
    ) -> RunExecution:
        """A run ready to execute under lease ``epoch``."""
        s = self.settings
        return RunExecution(
            run_id=run_id,
            ir=ir,
            store=FencedStore(self.store, epoch, s.outage),
            progress=progress,
            executors=s.kinds.executors,
            clock=s.clock,
            observers=s.observers,
            thread_pool=s.threads,
            default_retry=s.retry,
            bulkheads=s.bulkheads,
            breakers=s.breakers,
            sleeps=Sleeps(s.short_sleep, lambda due: self._suspend(run_id, due), s.clock),
        )

    def start(self, execution: RunExecution, deadline: float | None) -> None:
        """Execute a run held here, in a task of its own, until it stops."""
        run_id = execution.run_id
        task = asyncio.get_running_loop().create_task(self._run(run_id, deadline))
        self.held.add(HeldRun(execution, task))

        def finished(_task: asyncio.Task[RunResult]) -> None:
            self.held.remove(run_id)
            self.wakeups.fire()  # a slot is free

        task.add_done_callback(finished)
        self.heartbeat.start()

    async def _run(self, run_id: RunId, deadline: float | None) -> RunResult:
        """The run's task: drive it, then release it, due when it next needs a worker (or
        suspended until its sleep ends)."""
        held = self.held.get(run_id)
        assert held is not None  # added right after this task was created
        run = held.execution
        try:
            status, error = await self._drive(held, deadline)
        except LeaseLost as exc:
            _log.warning("lease_lost", run_id=run_id, error=str(exc))
            progress = run.progress
            return RunResult(run_id, run.ir.name, progress.status, progress.state, str(exc))
        except StoreError as exc:  # refused (not away: that is retried); try it again later
            now = self.settings.clock.now()
            await self.leases.release(run_id, wake_at=now + STORE_ERROR_BACKOFF)
            progress = run.progress
            return RunResult(run_id, run.ir.name, progress.status, progress.state, str(exc))
        due, held.parked = held.parked, None
        if due is not None:  # asleep: due when its sleep ends (or its deadline passes)
            wake = due if deadline is None else min(due, deadline)
            await self.leases.release(run_id, wake_at=wake)
            _log.debug("run_suspended", run_id=run_id, until=wake)
            if not self.held.closing:
                self.sleepers.set_alarm(run_id, wake)
        else:
            quiet, held.quiet = held.quiet, None
            await self.leases.hand_back(run_id, run.progress, suspended_at=quiet)
        return RunResult(run_id, run.ir.name, status, run.progress.state, error)

    def _suspend(self, run_id: RunId, due: float) -> None:
        """Stop executing a run that has nothing to do but sleep until ``due`` (called by its
        :class:`Sleeps`): its task ends, releasing it with that wake-up time."""
        held = self.held.get(run_id)
        if held is None or self.held.closing or held.lost:
            return
        if held.cancel_reason is not None:
            return  # being cancelled: that ends it
        held.parked = due
        held.task.cancel()

    async def _drive(
        self, held: HeldRun, deadline: float | None
    ) -> tuple[WorkflowStatus, str | None]:
        """Execute the run; its final status (or the status it stopped in), with the error.
        Being cancelled ends it CANCELLED, suspended, or (the engine closing) still due."""
        run = held.execution
        try:
            return await self._execute(held, deadline)
        except asyncio.CancelledError:
            due, held.parked = held.parked, None
            if held.lost:
                raise LeaseLost(run.run_id, held.epoch, None) from None
            reason, held.cancel_reason = held.cancel_reason, None
            if reason is None:
                if due is not None and not self.held.closing:
                    _uncancel()
                    held.parked = due
                    return run.progress.status, None  # suspended: see _run
                await self.leases.release(run.run_id)  # the engine is closing: the run stays due
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
        self, held: HeldRun, deadline: float | None
    ) -> tuple[WorkflowStatus, str | None]:
        """Run the graph (or finish an interrupted rollback); return the final status."""
        run = held.execution
        if run.progress.status is WorkflowStatus.ROLLBACK:
            return await _fail(run, run.progress.reason or "rolled back")
        if run.progress.status in (WorkflowStatus.INITIALIZING, WorkflowStatus.WAITING_APPROVAL):
            await run.set_status(WorkflowStatus.RUNNING)
        held.quiet = None
        clock = self.settings.clock
        remaining = deadline - clock.now() if deadline is not None else None
        try:
            async with clock.timeout(remaining):
                await run.run_graph(run.ir.graph, run.top, "")
        except TimeoutError:
            return await _fail(
                run,
                f"workflow timed out after {run.ir.config.timeout:g}s (configuration 'timeout')",
            )
        except StepFailed as exc:
            return await _fail(run, str(exc))
        except Suspended as exc:
            # Nothing more can run until a decision or signal arrives: stop holding the run.
            if exc.approval:
                await run.set_status(WorkflowStatus.WAITING_APPROVAL, reason=str(exc))
                return WorkflowStatus.WAITING_APPROVAL, None
            held.quiet = run.progress.seq
            return WorkflowStatus.RUNNING, None
        await run.set_status(WorkflowStatus.COMPLETED)
        return WorkflowStatus.COMPLETED, None


async def _fail(run: RunExecution, reason: str) -> tuple[WorkflowStatus, str]:
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
