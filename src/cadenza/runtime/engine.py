"""The engine: starts, resumes, waits for and cancels runs over a store.

An engine owns the runs it executes through a lease in the store, renewed while it lives;
a run whose engine died is taken over by the next engine that resumes it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from cadenza.errors import (
    CadenzaError,
    StepFailed,
    StoreError,
    Suspended,
    VersionMismatch,
)
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.identity import ApprovalDenied, Directory
from cadenza.ids import RunId, new_run_id
from cadenza.observe.base import Observer
from cadenza.observe.notify import drain as drain_notifications
from cadenza.resilience.breaker import BreakerConfig, Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import NO_RETRY, RetryPolicy
from cadenza.runtime.compensation import needs_rollback, roll_back
from cadenza.runtime.engine_control import ControlMixin, _held_elsewhere
from cadenza.runtime.engine_people import PeopleMixin, _approval_due
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.ownership import LEASE_SECONDS, new_owner, owner_is_dead
from cadenza.runtime.progress import Progress
from cadenza.runtime.run import RunExecution
from cadenza.runtime.status import WorkflowStatus
from cadenza.steps.webhook import aclose_clients
from cadenza.store.base import RunRecord, Store
from cadenza.store.memory import MemoryStore

_log = structlog.get_logger("cadenza.engine")

#: Statuses of runs that have work to do (a ROLLBACK still has compensations to run).
ACTIVE = (WorkflowStatus.INITIALIZING, WorkflowStatus.RUNNING, WorkflowStatus.ROLLBACK)


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


@dataclass(slots=True)
class ResumeReport:
    results: list[RunResult] = field(default_factory=list)
    errors: dict[RunId, str] = field(default_factory=dict)


class Engine(PeopleMixin, ControlMixin):
    """Runs workflows durably over ``store``.

    ``store`` is a :class:`Store`, a SQLite file path, ``"memory"``, or ``None`` for the
    embedded default (``$CADENZA_DB`` or ``./cadenza.db``). Use it as an async context
    manager; closing it stops the runs still in flight, which stay resumable. ``retry`` is the
    policy of steps that set none (and whose workflow sets no ``max_retries``). ``breakers``
    configures the circuit breakers steps name (others get :class:`BreakerConfig` defaults);
    they are shared by every run of the engine."""

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        observers: Sequence[Observer] = (),
        max_threads: int | None = None,
        retry: RetryPolicy = NO_RETRY,
        breakers: Mapping[str, BreakerConfig] | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.store: Store = _make_store(store)
        self.observers = tuple(observers)
        self.retry = retry
        self.bulkheads = BulkheadRegistry()
        self.breakers = Breakers(breakers)
        self.owner = new_owner()
        self._threads = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="cadenza")
        self._registry: dict[tuple[str, str], WorkflowIR] = {}
        self._targets: dict[tuple[str, str], str] = {}
        self._active: dict[RunId, asyncio.Task[RunResult]] = {}
        self._executions: dict[RunId, RunExecution] = {}
        self._quiet: dict[RunId, int] = {}  # suspended runs: their last seq when they stopped
        self._directory: Directory | None = directory
        self._cancel_reasons: dict[RunId, str] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._opened = False

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if not self._opened:
            await self.store.open()
            self._opened = True

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._threads.shutdown(wait=False, cancel_futures=True)
        await aclose_clients()
        await drain_notifications()
        if self._opened:
            await self.store.close()
            self._opened = False

    # -- workflows ---------------------------------------------------------------------------

    def register(self, workflow: Workflow | WorkflowIR, *, target: str = "") -> WorkflowIR:
        """Make a workflow known to this engine, so its unfinished runs can be resumed."""
        ir = workflow.compile() if isinstance(workflow, Workflow) else workflow
        self._registry[(ir.name, ir.version)] = ir
        if target:
            self._targets[(ir.name, ir.version)] = target
        return ir

    # -- runs --------------------------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        target: str = "",
        actor: str | None = None,
    ) -> RunId:
        """Validate ``input``, record the run and start it; returns once the run is stored.
        A workflow with ``allowed_users`` starts only for an ``actor`` among them (by name or
        role)."""
        await self.open()
        ir = self.register(workflow, target=target)
        if ir.config.allowed_users:
            if not actor:
                raise ApprovalDenied(
                    f"workflow {ir.name} may be started only by "
                    f"{', '.join(ir.config.allowed_users)}: say who you are (actor / --as)"
                )
            self.directory().check(actor, ir.config.allowed_users, f"start {ir.name}")
        values = ir.schema.validate_input(input or {})
        rid = RunId(run_id) if run_id else new_run_id()
        record = RunRecord(
            run_id=rid,
            workflow=ir.name,
            version=ir.version,
            target=target or self._targets.get((ir.name, ir.version), ""),
            input=values,
            **self._fresh(ir),
        )
        progress = Progress(reducers=ir.schema.reducers)
        created = Event(
            rid,
            1,
            EventType.RUN_CREATED,
            data={
                "workflow": ir.name,
                "version": ir.version,
                "input": values,
            },
        )
        running = Event(
            rid,
            2,
            EventType.STATUS,
            data={
                "from": str(WorkflowStatus.INITIALIZING),
                "to": str(WorkflowStatus.RUNNING),
            },
        )
        await self.store.create_run(record, (created, running))
        progress.apply_all((created, running))
        self._launch(ir, rid, progress, record.deadline)
        return rid

    async def run(
        self, workflow: Workflow | WorkflowIR, input: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunResult:
        """Start a run and wait for it to finish."""
        return await self.wait(await self.start(workflow, input, **kw))

    async def wait(self, run_id: str) -> RunResult:
        task = self._active.get(RunId(run_id))
        if task is not None:
            return await asyncio.shield(task)
        return await self.result(run_id)

    async def result(self, run_id: str) -> RunResult:
        """The run as the store has it: status, error and the state folded from its log."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        progress = await self._load(record, None)
        return RunResult(rid, record.workflow, record.status, progress.state, record.error)

    async def resume(self, run_id: str, workflow: Workflow | WorkflowIR | None = None) -> RunResult:
        """Continue an unfinished run from its last committed step and wait for it."""
        await self.open()
        rid = RunId(run_id)
        if rid in self._active:
            return await self.wait(rid)
        record = await self.store.get_run(rid)
        if record.status not in (*ACTIVE, WorkflowStatus.WAITING_APPROVAL):
            if workflow is not None:
                self.register(workflow)
            return await self.result(rid)
        execution = await self._take(record, workflow)
        _log.info(
            "run_resumed", run_id=rid, workflow=execution.ir.name, from_seq=execution.progress.seq
        )
        self._start_execution(execution, record.deadline)
        return await self.wait(rid)

    async def _take(
        self, record: RunRecord, workflow: Workflow | WorkflowIR | None = None
    ) -> RunExecution:
        """Claim a run for this engine and load it, ready to continue."""
        ir = self._resolve(record, workflow)
        lease = time.time() + LEASE_SECONDS
        if not await self.store.claim(
            record.run_id, self.owner, lease_until=lease, steal=owner_is_dead(record.owner)
        ):
            raise CadenzaError(
                f"run {record.run_id} is being executed by {record.owner} (lease until "
                f"{time.strftime('%H:%M:%S', time.localtime(record.lease_until or 0))}); "
                "it will be resumable when that lease expires"
            )
        return self._execution(ir, record.run_id, await self._load(record, ir))

    async def resume_all(self) -> ResumeReport:
        """Resume every unfinished run whose engine is gone, and every run waiting for an
        approval whose time is up (or whose decision was recorded by a process that died
        before continuing it); wait for them all. Runs that cannot be resumed (unknown or
        changed definition) are reported, not raised."""
        todo = await self._resumable()
        results = await asyncio.gather(*(self.resume(rid) for rid in todo), return_exceptions=True)
        report = ResumeReport()
        for run_id, result in zip(todo, results, strict=True):
            if isinstance(result, CadenzaError):
                _log.warning("resume_failed", run_id=run_id, error=str(result))
                report.errors[run_id] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                report.results.append(result)
        return report

    async def pick_up(self) -> dict[RunId, str]:
        """Start (without waiting for them) the runs :meth:`resume_all` would resume: what a
        worker does on every poll. Returns the runs that could not be started, with why."""
        problems: dict[RunId, str] = {}
        for run_id in await self._resumable():
            try:
                record = await self.store.get_run(run_id)
                execution = await self._take(record)
            except CadenzaError as exc:
                problems[run_id] = str(exc)
                continue
            self._start_execution(execution, record.deadline)
        return problems

    async def drain(self, timeout: float | None = None) -> int:
        """Wait for the runs in flight to finish or suspend, at most ``timeout`` seconds;
        returns how many are still running (closing the engine stops them, resumable)."""
        tasks = list(self._active.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return len(self._active)

    async def _resumable(self) -> list[RunId]:
        """Unfinished runs no live engine holds, and waiting runs with a due approval; less
        those this engine saw suspend (for a signal) that have logged nothing since."""
        await self.open()
        runs = await self.store.list_runs(status=ACTIVE, limit=100_000)
        runs += [
            r
            for r in await self.store.list_runs(
                status=[WorkflowStatus.WAITING_APPROVAL], limit=100_000
            )
            if _approval_due(await self._load(r, None))
        ]
        now = time.time()
        todo = []
        for r in runs:
            if r.run_id in self._active or _held_elsewhere(r, self.owner, now):
                continue
            quiet_since = self._quiet.get(r.run_id)
            if quiet_since is not None and not await self.store.read_events(
                r.run_id, after_seq=quiet_since
            ):
                continue  # still waiting for its signal
            todo.append(r.run_id)
        return todo

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, record: RunRecord, workflow: Workflow | WorkflowIR | None) -> WorkflowIR:
        if workflow is not None:
            ir = self.register(workflow)
        elif (record.workflow, record.version) in self._registry:
            ir = self._registry[(record.workflow, record.version)]
        elif record.target:
            from cadenza.runtime.loader import load_target

            loaded, _ = load_target(record.target)
            ir = self.register(loaded)
        else:
            raise CadenzaError(
                f"run {record.run_id} is of workflow {record.workflow!r}, which this engine does "
                "not know; register it with engine.register(...) or pass it to resume()"
            )
        if ir.name != record.workflow or ir.version != record.version:
            raise VersionMismatch(
                f"run {record.run_id} was started on {record.workflow} version {record.version}, "
                f"but the loaded definition is {ir.name} version {ir.version}; runs resume only "
                "on the definition they started with"
            )
        return ir

    async def _load(self, record: RunRecord, ir: WorkflowIR | None) -> Progress:
        reducers = ir.schema.reducers if ir else self._reducers_for(record)
        snapshot = await self.store.load_snapshot(record.run_id)
        events = await self.store.read_events(
            record.run_id, after_seq=snapshot.seq if snapshot else 0
        )
        progress = Progress.restore(reducers, snapshot).apply_all(events)
        if ir is not None:
            ir.schema.revive(progress.state)
        return progress

    def _reducers_for(self, record: RunRecord) -> Mapping[str, Any]:
        ir = self._registry.get((record.workflow, record.version))
        if ir is None and record.target:
            try:
                from cadenza.runtime.loader import load_target

                loaded, _ = load_target(record.target)
                ir = self.register(loaded)
            except CadenzaError:
                ir = None
        return ir.schema.reducers if ir else {}

    def _launch(
        self, ir: WorkflowIR, run_id: RunId, progress: Progress, deadline: float | None
    ) -> None:
        self._start_execution(self._execution(ir, run_id, progress), deadline)

    def _execution(self, ir: WorkflowIR, run_id: RunId, progress: Progress) -> RunExecution:
        return RunExecution(
            run_id=run_id,
            ir=ir,
            store=self.store,
            progress=progress,
            observers=self.observers,
            thread_pool=self._threads,
            default_retry=self.retry,
            bulkheads=self.bulkheads,
            breakers=self.breakers,
        )

    def _start_execution(self, execution: RunExecution, deadline: float | None) -> None:
        run_id = execution.run_id
        task = asyncio.get_running_loop().create_task(self._drive(execution, deadline))
        self._active[run_id] = task
        self._executions[run_id] = execution

        def finished(_task: asyncio.Task[RunResult]) -> None:
            self._active.pop(run_id, None)
            self._executions.pop(run_id, None)

        task.add_done_callback(finished)
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._renew_leases())

    async def _drive(self, run: RunExecution, deadline: float | None) -> RunResult:
        try:
            status, error = await self._execute(run, deadline)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(run.run_id, None)
            if reason is None:
                await self._release(run.run_id)
                raise  # the engine is closing: the run stays resumable
            status, error = WorkflowStatus.CANCELLED, reason
            await run.set_status(status, reason=reason)
        except StoreError as exc:
            _log.error("run_store_error", run_id=run.run_id, error=str(exc))
            raise
        except Exception as exc:
            status, error = WorkflowStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}"
            _log.exception("run_crashed", run_id=run.run_id)
            with contextlib.suppress(Exception):
                await run.set_status(status, reason=error)
        await self._release(run.run_id)
        return RunResult(run.run_id, run.ir.name, status, run.progress.state, error)

    async def _execute(
        self, run: RunExecution, deadline: float | None
    ) -> tuple[WorkflowStatus, str | None]:
        """Run the graph (or finish an interrupted rollback); return the final status."""
        if run.progress.status is WorkflowStatus.ROLLBACK:
            return await self._fail(run, run.progress.reason or "rolled back")
        if run.progress.status in (WorkflowStatus.INITIALIZING, WorkflowStatus.WAITING_APPROVAL):
            await run.set_status(WorkflowStatus.RUNNING)
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

    async def _fail(self, run: RunExecution, reason: str) -> tuple[WorkflowStatus, str]:
        """FAILED, after compensating completed steps (ROLLBACK) when any declared one."""
        if needs_rollback(run):
            if run.progress.status is not WorkflowStatus.ROLLBACK:
                await run.set_status(WorkflowStatus.ROLLBACK, reason=reason)
            outcome = await roll_back(run)
            reason = f"{reason} (rolled back: {outcome.summary()})"
        await run.set_status(WorkflowStatus.FAILED, reason=reason)
        return WorkflowStatus.FAILED, reason

    async def _release(self, run_id: RunId) -> None:
        with contextlib.suppress(StoreError):
            await self.store.release(run_id, self.owner)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            for run_id, task in list(self._active.items()):
                held = await self.store.claim(
                    run_id, self.owner, lease_until=time.time() + LEASE_SECONDS
                )
                if not held:
                    _log.warning("lease_lost", run_id=run_id)
                    task.cancel()


def _make_store(store: Store | str | os.PathLike[str] | None) -> Store:
    if store is None or isinstance(store, str | os.PathLike):
        if store == "memory":
            return MemoryStore()
        if isinstance(store, str) and store.startswith(("postgres://", "postgresql://")):
            from cadenza.store.postgres import PostgresStore

            return PostgresStore(store)
        from cadenza.store.sqlite import SQLiteStore

        return SQLiteStore(store)
    return store
