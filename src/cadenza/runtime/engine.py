"""The engine: starts, submits, resumes, waits for and cancels runs over a store.

An engine owns the runs it executes through a lease in the store (with a fencing epoch),
renewed while it lives; a run whose engine died is taken over by the next engine that claims
it, and the old engine's late writes are refused."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from cadenza.core.errors import (
    CadenzaError,
    VersionMismatch,
)
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId, new_run_id
from cadenza.core.status import WorkflowStatus
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.identity import ApprovalDenied, Directory
from cadenza.observe.base import Observer
from cadenza.observe.notify import drain as drain_notifications
from cadenza.resilience.breaker import BreakerConfig, Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import NO_RETRY, RetryPolicy
from cadenza.runtime.alarms import Alarms
from cadenza.runtime.commands import CommandsMixin
from cadenza.runtime.engine_control import ControlMixin
from cadenza.runtime.engine_drive import DriveMixin, RunResult
from cadenza.runtime.engine_leases import LeasesMixin
from cadenza.runtime.engine_people import PeopleMixin
from cadenza.runtime.outages import Outage
from cadenza.runtime.ownership import LEASE_SECONDS, new_owner
from cadenza.runtime.progress import Progress
from cadenza.runtime.run import RunExecution
from cadenza.runtime.sleeps import SHORT_SLEEP
from cadenza.steps.webhook import aclose_clients
from cadenza.store.base import DEFAULT_QUEUE, Hints, RunRecord, SharesResilience, Store
from cadenza.store.url import open_store

_log = structlog.get_logger("cadenza.engine")

#: Statuses of runs that have work to do (a ROLLBACK still has compensations to run).
ACTIVE = (WorkflowStatus.INITIALIZING, WorkflowStatus.RUNNING, WorkflowStatus.ROLLBACK)


@dataclass(slots=True)
class ResumeReport:
    results: list[RunResult] = field(default_factory=list)
    errors: dict[RunId, str] = field(default_factory=dict)


class Engine(DriveMixin, PeopleMixin, ControlMixin, CommandsMixin, LeasesMixin):
    """Runs workflows durably over ``store``.

    ``store`` is a :class:`Store`, a SQLite file path or ``sqlite:///path`` URL, a
    ``postgresql://`` URL, ``"memory"``, or ``None`` for the embedded default (``$CADENZA_DB``
    or ``./cadenza.db``); another URL scheme is refused (:func:`open_store`). Use it as an
    async context manager; closing it stops the runs still in flight, which stay resumable.
    ``retry`` is the policy of steps that set none (and whose workflow sets no
    ``max_retries``). ``breakers`` configures the circuit breakers steps name (others get
    :class:`BreakerConfig` defaults); they are shared by every run of the engine, and by every
    engine of a store that shares them (PostgreSQL), as are bulkheads. ``lease_seconds`` is
    how long a claim on a run lasts without renewal (renewed every third of it): how long a
    dead worker's runs wait before another takes them over. A run whose only work left is
    sleeping (a timer or a retry backoff of at least ``short_sleep`` seconds) is suspended:
    it holds no task and no lease, its wake-up time is in the store, and this engine wakes it
    when due while it is open (a worker's engine leaves that to the worker, which wakes it or
    any other due run); shorter sleeps are slept in memory."""

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        observers: Sequence[Observer] = (),
        max_threads: int | None = None,
        retry: RetryPolicy = NO_RETRY,
        breakers: Mapping[str, BreakerConfig] | None = None,
        directory: Directory | None = None,
        lease_seconds: float = LEASE_SECONDS,
        short_sleep: float = SHORT_SLEEP,
    ) -> None:
        if not lease_seconds > 0:
            raise CadenzaError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        if not short_sleep >= 0:
            raise CadenzaError(f"short_sleep must be >= 0, got {short_sleep!r}")
        self.store: Store = _make_store(store)
        self.observers = tuple(observers)
        self.retry = retry
        self.lease_seconds = float(lease_seconds)
        self.short_sleep = float(short_sleep)
        if isinstance(self.store, SharesResilience):
            self.bulkheads: BulkheadRegistry = self.store.bulkheads()
            self.breakers = Breakers(
                breakers, backend=self.store.breaker_backend(), clock=time.time
            )
        else:
            self.bulkheads = BulkheadRegistry()
            self.breakers = Breakers(breakers)
        self._hints: Hints | None = self.store if isinstance(self.store, Hints) else None
        self.owner = new_owner()
        self._threads = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="cadenza")
        self._registry: dict[tuple[str, str], WorkflowIR] = {}
        self._targets: dict[tuple[str, str], str] = {}
        self._active: dict[RunId, asyncio.Task[RunResult]] = {}
        self._executions: dict[RunId, RunExecution] = {}
        self._quiet: dict[RunId, int] = {}  # suspended runs: their last seq when they stopped
        self._directory: Directory | None = directory
        self._cancel_reasons: dict[RunId, str] = {}
        self._epochs: dict[RunId, int] = {}  # the lease epoch held for each run in flight
        self._lost: set[RunId] = set()  # runs whose lease another worker took
        self._dead_checked = float("-inf")  # when dead local owners were last looked for
        self._heartbeat: asyncio.Task[None] | None = None
        self._parked: dict[RunId, float] = {}  # runs being suspended: when they are due
        self._alarms = Alarms(self._ring)  # runs suspended here, until they are due
        self._outage = Outage()  # whether the store is away (its calls are retried meanwhile)
        #: Whether this engine wakes the runs it suspended (a worker claims them instead).
        self._wakes_own_runs = True
        self._opened = False
        self._closing = False
        #: Whether to listen for the store's hints (where it sends them); off: poll only.
        self.use_hints = True
        self._init_commands()

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if not self._opened:
            await self.store.open()
            self._opened = True
            self._closing = False

    async def close(self) -> None:
        self._closing = True
        await self._stop_background()
        tasks = list(self._active.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._alarms.close()
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

    @property
    def workflows(self) -> list[tuple[str, str]]:
        """The ``(name, version)`` of every registered workflow."""
        return list(self._registry)

    # -- runs --------------------------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        target: str = "",
        actor: str | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> RunId:
        """Validate ``input``, record the run and start it here; returns once the run is
        stored. A workflow with ``allowed_users`` starts only for an ``actor`` who is a
        configured user among them (by name or role); see :meth:`Directory.authorize`.
        ``queue`` is where the run goes if this process dies before it ends."""
        ir, record, created = await self._new_run(
            workflow, input, run_id, target, actor, queue, held=True
        )
        running = Event(
            record.run_id,
            2,
            EventType.STATUS,
            data={"from": str(WorkflowStatus.INITIALIZING), "to": str(WorkflowStatus.RUNNING)},
        )
        await self.store.create_run(record, (created, running))
        progress = Progress(reducers=ir.schema.reducers)
        progress.apply_all((created, running))
        self._epochs[record.run_id] = record.epoch
        self._launch(ir, record.run_id, progress, record.deadline)
        return record.run_id

    async def submit(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        run_id: str | None = None,
        target: str = "",
        actor: str | None = None,
    ) -> RunId:
        """Validate ``input`` and record the run on ``queue`` without executing it: a worker
        that knows the workflow and serves the queue claims it (``cadenza worker``). The run
        is INITIALIZING until then; the workflow's ``timeout`` counts from now. Give ``target``
        (``pkg.mod:attr``) so that workers started without ``--workflow`` can load it."""
        _, record, created = await self._new_run(
            workflow, input, run_id, target, actor, queue, held=False
        )
        await self.store.create_run(record, (created,))
        return record.run_id

    async def _new_run(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None,
        run_id: str | None,
        target: str,
        actor: str | None,
        queue: str,
        *,
        held: bool,
    ) -> tuple[WorkflowIR, RunRecord, Event]:
        """Check who starts it and its input; the record (held by this engine, or queued for
        any worker) and its first event."""
        await self.open()
        if not queue:
            raise CadenzaError("queue must be a non-empty name")
        ir = self.register(workflow, target=target)
        if ir.config.allowed_users or actor:  # else there is nothing to check
            try:
                self.directory().authorize(actor, ir.config.allowed_users, f"start {ir.name}")
            except ApprovalDenied as exc:
                # No run exists to hold the refusal in its log: the operational log keeps it.
                _log.warning("start_refused", workflow=ir.name, actor=actor, reason=str(exc))
                raise
        values = ir.schema.validate_input(input or {})
        rid = RunId(run_id) if run_id else new_run_id()
        now = time.time()
        fields: dict[str, Any] = (
            self._fresh(ir)
            if held
            else {
                "created_at": now,
                "updated_at": now,
                "deadline": now + ir.config.timeout if ir.config.timeout else None,
                "wake_at": now,
            }
        )
        record = RunRecord(
            run_id=rid,
            workflow=ir.name,
            version=ir.version,
            target=target or self._targets.get((ir.name, ir.version), ""),
            input=values,
            queue=queue,
            **fields,
        )
        data: dict[str, Any] = {"workflow": ir.name, "version": ir.version, "input": values}
        if ir.config.allowed_users:  # so that an engine without the definition can check
            data["allowed_users"] = list(ir.config.allowed_users)
        created = Event(rid, 1, EventType.RUN_CREATED, data=data)
        return ir, record, created

    async def run(
        self, workflow: Workflow | WorkflowIR, input: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunResult:
        """Start a run and wait for it to finish."""
        return await self.wait(await self.start(workflow, input, **kw))

    async def wait(self, run_id: str) -> RunResult:
        """Wait until a run executing here finishes or stops (for a decision, a signal, or
        paused); a run it suspended while sleeping is followed through its sleep. A run not
        executing here: as the store has it."""
        rid = RunId(run_id)
        while True:
            task = self._active.get(rid)
            if task is not None:
                result = await asyncio.shield(task)
                if rid not in self._alarms:
                    return result
            elif rid in self._alarms:
                await self._alarms.woken(rid)
            else:
                return await self.result(rid)

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
        if await self._apply_on_claim(execution):
            self._start_execution(execution, record.deadline)
        return await self.wait(rid)

    async def resume_all(self) -> ResumeReport:
        """Resume every unfinished run that no live engine holds and that has work to do now
        (queued runs, runs whose engine died, approvals whose time is up) or that sleeps on a
        timer or backoff (it is woken when due); wait for them all.
        Runs that cannot be resumed (unknown or changed definition) are reported, not
        raised."""
        report = ResumeReport()
        started: list[RunId] = []
        while True:
            problems, taken = await self._pick_up(limit=10_000, workflows=None, queues=None)
            report.errors.update(problems)
            started += taken
            if not taken:
                break
        started += await self._adopt_sleepers(set(started))
        results = await asyncio.gather(*(self.wait(rid) for rid in started), return_exceptions=True)
        for run_id, result in zip(started, results, strict=True):
            if isinstance(result, CadenzaError):
                _log.warning("resume_failed", run_id=run_id, error=str(result))
                report.errors[run_id] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                report.results.append(result)
        return report

    async def _adopt_sleepers(self, taken: set[RunId]) -> list[RunId]:
        """Set alarms for the suspended runs that no live engine holds and that sleep until
        a later time; returns them."""
        now = time.time()
        dead = set(await self._dead_owners())
        adopted: list[RunId] = []
        for record in await self.store.list_runs(status=[WorkflowStatus.RUNNING], limit=1_000_000):
            rid = record.run_id
            if rid in taken or rid in self._active or record.wake_at is None:
                continue
            held = record.owner is not None and (record.lease_until or 0) > now
            if record.wake_at > now and (not held or record.owner in dead):
                self._alarms.set(rid, record.wake_at)
                adopted.append(rid)
        return adopted

    async def pick_up(
        self,
        *,
        limit: int = 10_000,
        workflows: Sequence[tuple[str, str]] | None = None,
        queues: Sequence[str] | None = None,
    ) -> dict[RunId, str]:
        """Claim and start (without waiting for them) up to ``limit`` runs that have work to
        do now, of the given ``(name, version)`` workflows and queues (``None``: any): what a
        worker does on every poll. Returns the runs that could not be started, with why."""
        problems, _ = await self._pick_up(limit=limit, workflows=workflows, queues=queues)
        return problems

    async def drain(self, timeout: float | None = None) -> int:
        """Wait for the runs in flight to finish or suspend, at most ``timeout`` seconds;
        returns how many are still running (closing the engine stops them, resumable)."""
        tasks = list(self._active.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return len(self._active)

    @property
    def in_flight(self) -> int:
        """How many runs this engine is executing now."""
        return len(self._active)

    @property
    def sleeping(self) -> int:
        """How many runs this engine suspended until a time that has not come yet."""
        return len(self._alarms)

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


def _make_store(store: Store | str | os.PathLike[str] | None) -> Store:
    if store is None or isinstance(store, str | os.PathLike):
        return open_store(store)
    return store
