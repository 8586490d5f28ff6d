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
from cadenza.observe.notify import notify
from cadenza.resilience.breaker import BreakerConfig, Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import NO_RETRY, RetryPolicy
from cadenza.runtime.compensation import needs_rollback, roll_back
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.fork import check_redrivable, copy_log, cut_after_step
from cadenza.runtime.ownership import LEASE_SECONDS, new_owner, owner_is_dead
from cadenza.runtime.progress import Progress
from cadenza.runtime.run import RunExecution
from cadenza.runtime.status import WorkflowStatus, check_transition
from cadenza.steps.approval import decided
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


class Engine:
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

    # -- approvals and signals ------------------------------------------------------------------

    def directory(self) -> Directory:
        """Users and roles (``cadenza.toml`` or ``$CADENZA_CONFIG``), read once."""
        if self._directory is None:
            self._directory = Directory.load()
        return self._directory

    async def decide(
        self,
        run_id: str,
        step: str,
        *,
        actor: str,
        approve: bool,
        comment: str = "",
        directory: Directory | None = None,
    ) -> RunResult:
        """Record ``actor``'s decision on the approval ``step`` is waiting for. With a
        rejection or a quorum of approvals the run continues here; the result is returned when
        it stops again. An actor who may not decide is refused, and the refusal recorded."""
        await self.open()
        record = await self.store.get_run(RunId(run_id))
        if record.status is not WorkflowStatus.WAITING_APPROVAL:
            raise CadenzaError(f"run {run_id} is {record.status}, not waiting for an approval")
        execution = await self._take(record)
        try:
            request = execution.progress.approvals.get(step)
            waiting = [p for p, r in execution.progress.approvals.items() if decided(r) is None]
            if request is None or decided(request) is not None:
                shown = ", ".join(waiting) or "none"
                raise CadenzaError(
                    f"step {step!r} of run {run_id} is not waiting for a decision "
                    f"(waiting: {shown})"
                )
            if any(d["actor"] == actor for d in request["decisions"]):
                raise CadenzaError(f"{actor} has already decided on {step!r}")
            try:
                (directory or self.directory()).check(
                    actor, request["approvers"], f"decide {step!r}"
                )
            except ApprovalDenied as exc:
                await execution.commit(
                    EventType.APPROVAL_REFUSED, step, data={"actor": actor, "reason": str(exc)}
                )
                raise
            await execution.commit(
                EventType.APPROVAL_DECISION,
                step,
                data={"actor": actor, "approve": approve, "comment": comment},
            )
            verdict = "approved" if approve else "rejected"
            notify(
                execution.ir.config.notification_channels,
                f"{execution.ir.name} run {record.run_id}, step {step}: {verdict} by {actor}"
                + (f": {comment}" if comment else ""),
                run_id=record.run_id,
                workflow=execution.ir.name,
                step=step,
                actor=actor,
                approve=approve,
                comment=comment,
            )
        except BaseException:
            await self._release(record.run_id)
            raise
        if decided(execution.progress.approvals[step]) is None:
            await self._release(record.run_id)  # more approvals needed
            return await self.result(run_id)
        self._start_execution(execution, record.deadline)
        return await self.wait(run_id)

    async def pending_approvals(
        self, *, for_user: str | None = None, directory: Directory | None = None
    ) -> list[dict[str, Any]]:
        """Every approval waiting for a decision (for one user, by name or role)."""
        people = directory or (self.directory() if for_user else None)
        out = []
        for record in await self.store.list_runs(
            status=[WorkflowStatus.WAITING_APPROVAL], limit=100_000
        ):
            progress = await self._load(record, None)
            for path, request in progress.approvals.items():
                if decided(request) is not None:
                    continue
                if for_user and people and not people.matches(for_user, request["approvers"]):
                    continue
                out.append(
                    {
                        "run_id": record.run_id,
                        "workflow": record.workflow,
                        "step": path,
                        "approvers": request["approvers"],
                        "quorum": request["quorum"],
                        "approved_by": [d["actor"] for d in request["decisions"]],
                        "summary": request.get("summary"),
                        "show": request.get("show"),
                        "since": request["since"],
                        "deadline": request.get("deadline"),
                    }
                )
        return out

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, actor: str = ""
    ) -> RunResult:
        """Deliver an external event to a run; a step waiting for ``name`` goes on."""
        await self.open()
        record = await self.store.get_run(RunId(run_id))
        if record.status.terminal:
            raise CadenzaError(f"run {run_id} is {record.status}; it takes no more signals")
        execution = await self._take(record)
        await execution.commit(
            EventType.SIGNAL, data={"name": name, "payload": payload, "actor": actor}
        )
        if record.status is WorkflowStatus.RUNNING:
            self._start_execution(execution, record.deadline)
            return await self.wait(run_id)
        await self._release(record.run_id)
        return await self.result(run_id)

    async def resume_all(self) -> ResumeReport:
        """Resume every unfinished run whose engine is gone, and every run waiting for an
        approval whose time is up (or whose decision was recorded by a process that died
        before continuing it); wait for them all. Runs that cannot be resumed (unknown or
        changed definition) are reported, not raised."""
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
        todo = [
            r.run_id
            for r in runs
            if r.run_id not in self._active and not _held_elsewhere(r, self.owner, now)
        ]
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

    async def cancel(
        self, run_id: str, reason: str = "cancelled", *, actor: str | None = None
    ) -> RunResult:
        """Cancel a run: stop its steps and record CANCELLED. A run executing in another
        process is stopped at its next commit (its log has moved on)."""
        rid = RunId(run_id)
        await self._authorize(await self.store.get_run(rid), actor, "cancel")
        task = self._active.get(rid)
        if task is not None:
            check_transition((await self.store.get_run(rid)).status, WorkflowStatus.CANCELLED)
            self._cancel_reasons[rid] = reason
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return await self.result(rid)
        record = await self.store.get_run(rid)
        check_transition(record.status, WorkflowStatus.CANCELLED)
        await self._append_status(record, WorkflowStatus.CANCELLED, reason)
        return await self.result(rid)

    # -- re-drive, time travel, pause ----------------------------------------------------------

    async def redrive(
        self,
        run_id: str,
        workflow: Workflow | WorkflowIR | None = None,
        *,
        actor: str | None = None,
    ) -> RunResult:
        """Run a failed (or cancelled) run again from where it stopped, as a new run linked to
        it: its completed steps are kept, the failed step and what follows run again."""
        source = await self.store.get_run(RunId(run_id))
        await self._authorize(source, actor, "re-drive")
        if source.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
            raise CadenzaError(
                f"run {run_id} is {source.status}; only FAILED or CANCELLED runs can be re-driven"
            )
        events = await self.store.read_events(source.run_id)
        check_redrivable(events)
        return await self._start_copy(source, events, None, None, None, workflow)

    async def fork(
        self,
        run_id: str,
        *,
        after: str,
        set: Mapping[str, Any] | None = None,
        workflow: Workflow | WorkflowIR | None = None,
        actor: str | None = None,
    ) -> RunResult:
        """Time travel: a new run from the state right after step ``after`` of ``run_id``
        (with ``set`` applied over it), linked to its parent."""
        source = await self.store.get_run(RunId(run_id))
        await self._authorize(source, actor, "fork")
        events = await self.store.read_events(source.run_id)
        return await self._start_copy(
            source, events, cut_after_step(events, after), after, set, workflow
        )

    async def _start_copy(
        self,
        source: RunRecord,
        events: list[Event],
        upto: int | None,
        after: str | None,
        patch: Mapping[str, Any] | None,
        workflow: Workflow | WorkflowIR | None,
    ) -> RunResult:
        await self.open()
        ir = self._resolve(source, workflow)
        if patch:
            patch = ir.schema.validate_input(patch)
        rid = new_run_id()
        record = source.evolve(
            run_id=rid, error=None, parent_run_id=source.run_id, **self._fresh(ir)
        )
        copied = copy_log(
            events, rid, upto=upto, parent=source.run_id, from_step=after, patch=patch
        )
        await self.store.create_run(record, copied)
        _log.info("run_forked", run_id=rid, parent=source.run_id, after=after)
        return await self.resume(rid, ir)

    async def pause(self, run_id: str, reason: str = "paused", *, actor: str | None = None) -> None:
        """Stop starting new steps of a run (those in flight finish and are recorded). The
        run stays PAUSED, across restarts, until :meth:`unpause`."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        await self._authorize(record, actor, "pause")
        check_transition(record.status, WorkflowStatus.PAUSED)
        execution = self._executions.get(rid)
        if execution is not None:
            execution.hold()
            await execution.set_status(WorkflowStatus.PAUSED, reason=reason)
            return
        self._refuse_if_held(record)
        await self._append_status(record, WorkflowStatus.PAUSED, reason)

    async def unpause(self, run_id: str, *, actor: str | None = None) -> RunResult:
        """Let a paused run go on; waits for it to finish."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        await self._authorize(record, actor, "unpause")
        check_transition(record.status, WorkflowStatus.RUNNING)
        execution = self._executions.get(rid)
        if execution is not None:
            await execution.set_status(WorkflowStatus.RUNNING)
            execution.release_hold()
            return await self.wait(rid)
        self._refuse_if_held(record)
        await self._append_status(record, WorkflowStatus.RUNNING, None)
        return await self.resume(rid)

    def _fresh(self, ir: WorkflowIR) -> dict[str, Any]:
        """The fields of a run record that a new run, held by this engine, starts with."""
        now = time.time()
        return {
            "status": WorkflowStatus.RUNNING,
            "created_at": now,
            "updated_at": now,
            "deadline": now + ir.config.timeout if ir.config.timeout else None,
            "owner": self.owner,
            "lease_until": now + LEASE_SECONDS,
        }

    async def _authorize(self, record: RunRecord, actor: str | None, command: str) -> None:
        """Refuse ``command`` on a run of a workflow with ``allowed_users`` unless ``actor``
        is among them (by name or role). The refusal is recorded in the run's log when no
        other process is executing it (an append there would stop that process)."""
        try:
            ir = self._resolve(record, None)
        except CadenzaError:
            return  # the definition is not known here: there is nothing to check against
        allowed = ir.config.allowed_users
        if not allowed or (actor and self.directory().matches(actor, allowed)):
            return
        who = actor or "a caller who did not say who they are"
        reason = f"{who} may not {command} runs of {ir.name}: it needs one of {', '.join(allowed)}"
        execution = self._executions.get(record.run_id)
        data = {"actor": actor or "", "command": command, "reason": reason}
        if execution is not None:
            await execution.commit(EventType.REFUSED, data=data)
        elif not _held_elsewhere(record, self.owner, time.time()):
            events = await self.store.read_events(record.run_id)
            seq = events[-1].seq + 1 if events else 1
            refused = Event(record.run_id, seq, EventType.REFUSED, data=data)
            await self.store.append(record.run_id, (refused,))
        raise ApprovalDenied(reason)

    def _refuse_if_held(self, record: RunRecord) -> None:
        if _held_elsewhere(record, self.owner, time.time()):
            raise CadenzaError(
                f"run {record.run_id} is executing in {record.owner}; control it from there"
            )

    async def _append_status(
        self, record: RunRecord, status: WorkflowStatus, reason: str | None
    ) -> None:
        events = await self.store.read_events(record.run_id)
        data: dict[str, Any] = {"from": str(record.status), "to": str(status)}
        if reason:
            data["reason"] = reason
        seq = events[-1].seq + 1 if events else 1
        event = Event(record.run_id, seq, EventType.STATUS, data=data)
        await self.store.append(record.run_id, (event,), status=status, error=reason)

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


def _approval_due(progress: Progress) -> bool:
    """A waiting run has something to do: an open request past its deadline, or a request
    already decided (its process died before going on)."""
    now = time.time()
    for path, request in progress.approvals.items():
        if path in progress.done:
            continue
        outcome = decided(request)
        deadline = request.get("deadline")
        if outcome is not None or (deadline is not None and deadline <= now):
            return True
    return False


def _held_elsewhere(record: RunRecord, owner: str, now: float) -> bool:
    """The run's lease belongs to another engine that is alive and has not let it expire."""
    if record.owner in (None, owner) or owner_is_dead(record.owner):
        return False
    return (record.lease_until or 0) > now


def _make_store(store: Store | str | os.PathLike[str] | None) -> Store:
    if store is None or isinstance(store, str | os.PathLike):
        if store == "memory":
            return MemoryStore()
        from cadenza.store.sqlite import SQLiteStore

        return SQLiteStore(store)
    return store
