"""The engine: starts, submits, resumes, waits for and cancels runs over a store.

An engine owns the runs it executes through a lease in the store (with a fencing epoch),
renewed while it lives; a run whose engine died is taken over by the next engine that claims
it, and the old engine's late writes are refused. :class:`Engine` is a thin front over
collaborators that each own their part of this (:mod:`cadenza.runtime.parts`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cadenza.core.clock import SYSTEM_CLOCK, Clock
from cadenza.core.errors import CadenzaError
from cadenza.core.ids import RunId
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.identity import Directory
from cadenza.observe.base import Observer
from cadenza.observe.notify import drain as drain_notifications
from cadenza.resilience.breaker import BreakerConfig, Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import NO_RETRY, RetryPolicy
from cadenza.runtime.control import ResumeReport
from cadenza.runtime.driver import RunSettings
from cadenza.runtime.kinds import StepKinds, default_kinds
from cadenza.runtime.outages import Outage
from cadenza.runtime.ownership import LEASE_SECONDS, new_owner
from cadenza.runtime.parts import assemble
from cadenza.runtime.results import RunResult
from cadenza.runtime.sleeps import SHORT_SLEEP
from cadenza.store.base import DEFAULT_QUEUE, SharesResilience, Store
from cadenza.store.url import open_store

__all__ = ["Engine", "ResumeReport", "RunResult"]


class Engine:
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
    any other due run); shorter sleeps are slept in memory. ``kinds`` are the step executors
    (default: Cadenza's own, :data:`cadenza.steps.KINDS`); ``clock`` is the time every run
    of the engine keeps (a :class:`~cadenza.core.clock.ManualClock` in tests)."""

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
        kinds: StepKinds | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not lease_seconds > 0:
            raise CadenzaError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        if not short_sleep >= 0:
            raise CadenzaError(f"short_sleep must be >= 0, got {short_sleep!r}")
        self.store: Store = _make_store(store)
        self.clock = clock
        self.lease_seconds = float(lease_seconds)
        self.short_sleep = float(short_sleep)
        self.owner = new_owner()
        if isinstance(self.store, SharesResilience):
            self.bulkheads: BulkheadRegistry = self.store.bulkheads()
            backend = self.store.breaker_backend()
            self.breakers = Breakers(breakers, backend=backend, clock=clock.now)
        else:
            self.bulkheads = BulkheadRegistry()
            self.breakers = Breakers(breakers, clock=clock.monotonic)
        #: Whether the store is away (its calls are retried meanwhile); shared by every part.
        self.outage = Outage(clock)
        self.kinds = kinds if kinds is not None else default_kinds()
        self.settings = RunSettings(
            kinds=self.kinds,
            clock=clock,
            outage=self.outage,
            observers=tuple(observers),
            threads=ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="cadenza"),
            retry=retry,
            bulkheads=self.bulkheads,
            breakers=self.breakers,
            short_sleep=self.short_sleep,
        )
        self._directory = directory
        self._opened = False
        #: The collaborators this front delegates to (see :mod:`cadenza.runtime.parts`).
        self.parts = assemble(
            self.store, self.owner, self.lease_seconds, self.settings, self.directory
        )

    # -- settings ------------------------------------------------------------------------------

    @property
    def observers(self) -> tuple[Observer, ...]:
        """Told of every event of every run started from now on."""
        return self.settings.observers

    @observers.setter
    def observers(self, observers: Sequence[Observer]) -> None:
        self.settings.observers = tuple(observers)

    @property
    def retry(self) -> RetryPolicy:
        return self.settings.retry

    @retry.setter
    def retry(self, retry: RetryPolicy) -> None:
        self.settings.retry = retry

    @property
    def use_hints(self) -> bool:
        """Whether to listen for the store's hints (where it sends them); off: poll only."""
        return self.parts.inbox.use_hints

    @use_hints.setter
    def use_hints(self, on: bool) -> None:
        self.parts.inbox.use_hints = on

    # -- lifetime ------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if not self._opened:
            await self.store.open()
            self._opened = True
            self.parts.held.closing = False

    async def close(self) -> None:
        self.parts.held.closing = True
        await self.parts.heartbeat.stop()
        tasks = self.parts.held.tasks()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.parts.sleepers.close()
        self.settings.threads.shutdown(wait=False, cancel_futures=True)
        for close in self.settings.kinds.closers:
            await close()
        await drain_notifications()
        if self._opened:
            await self.store.close()
            self._opened = False

    def on_wake(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, must not block) whenever there may be new work:
        a hint from the store, or a run of this engine ending (a slot is free)."""
        self.parts.wakeups.add(callback)
        self.parts.heartbeat.start()

    # -- workflows -----------------------------------------------------------------------------

    def register(self, workflow: Workflow | WorkflowIR, *, target: str = "") -> WorkflowIR:
        """Make a workflow known to this engine, so its unfinished runs can be resumed."""
        return self.parts.definitions.register(workflow, target=target)

    @property
    def workflows(self) -> list[tuple[str, str]]:
        """The ``(name, version)`` of every registered workflow."""
        return self.parts.definitions.known()

    def directory(self) -> Directory:
        """Users and roles (``cadenza.toml`` or ``$CADENZA_CONFIG``), read once."""
        if self._directory is None:
            self._directory = Directory.load()
        return self._directory

    # -- runs ----------------------------------------------------------------------------------

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
        await self.open()
        return await self.parts.launcher.start(workflow, input, run_id, target, actor, queue)

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
        await self.open()
        return await self.parts.launcher.submit(workflow, input, run_id, target, actor, queue)

    async def run(
        self, workflow: Workflow | WorkflowIR, input: Mapping[str, Any] | None = None, **kw: Any
    ) -> RunResult:
        """Start a run and wait for it to finish."""
        return await self.wait(await self.start(workflow, input, **kw))

    async def wait(self, run_id: str) -> RunResult:
        """Wait until a run executing here finishes or stops (for a decision, a signal, or
        paused); a run it suspended while sleeping is followed through its sleep. A run not
        executing here: as the store has it."""
        return await self.parts.results.wait(RunId(run_id))

    async def result(self, run_id: str) -> RunResult:
        """The run as the store has it: status, error and the state folded from its log."""
        return await self.parts.results.result(RunId(run_id))

    async def resume(self, run_id: str, workflow: Workflow | WorkflowIR | None = None) -> RunResult:
        """Continue an unfinished run from its last committed step and wait for it."""
        await self.open()
        return await self.parts.control.resume(RunId(run_id), workflow)

    async def resume_all(self) -> ResumeReport:
        """Resume every unfinished run that no live engine holds and that has work to do now
        (queued runs, runs whose engine died, approvals whose time is up) or that sleeps on a
        timer or backoff (it is woken when due); wait for them all.
        Runs that cannot be resumed (unknown or changed definition) are reported, not
        raised."""
        await self.open()
        return await self.parts.control.resume_all()

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
        await self.open()
        problems, _ = await self.parts.intake.pick_up(
            limit=limit, workflows=workflows, queues=queues
        )
        return problems

    async def drain(self, timeout: float | None = None) -> int:
        """Wait for the runs in flight to finish or suspend, at most ``timeout`` seconds;
        returns how many are still running (closing the engine stops them, resumable)."""
        tasks = self.parts.held.tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return len(self.parts.held)

    @property
    def in_flight(self) -> int:
        """How many runs this engine is executing now."""
        return len(self.parts.held)

    @property
    def sleeping(self) -> int:
        """How many runs this engine suspended until a time that has not come yet."""
        return len(self.parts.sleepers)

    # -- people --------------------------------------------------------------------------------

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
        it stops again.

        A decision that cannot be taken is refused and the refusal recorded in the run's log
        (``approval_refused``): :class:`ApprovalDenied` for an actor who is not a configured
        user allowed to decide, :class:`CadenzaError` for a run that is not waiting, a step
        that is not waiting for a decision, and a second decision by the same actor (a
        decision is final)."""
        await self.open()
        return await self.parts.approvals.decide(
            RunId(run_id), step, actor=actor, approve=approve, comment=comment, directory=directory
        )

    async def pending_approvals(
        self,
        *,
        for_user: str | None = None,
        directory: Directory | None = None,
        limit: int | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Approvals waiting for a decision (only those ``for_user`` may decide, by name or
        role: nothing for a name that is not a configured user), oldest first (by ``since``,
        then run id and step). ``limit``: at most that many (``None``: all); ``after``: the
        last one of the previous page, to list the next.

        Read from the store's table of pending approvals, which the store keeps with the
        events that open and close them, rather than by folding every waiting run's log."""
        await self.open()
        return await self.parts.approvals.pending(
            for_user=for_user, directory=directory, limit=limit, after=after
        )

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, actor: str = ""
    ) -> RunResult:
        """Deliver an external event to a run; a step waiting for ``name`` goes on. A run that
        nobody executes goes on here (the result is returned when it stops again); one that
        another process executes is sent the signal, and the result is its state once that
        process has recorded it."""
        await self.open()
        return await self.parts.control.signal(RunId(run_id), name, payload, actor)

    # -- control -------------------------------------------------------------------------------

    async def cancel(
        self, run_id: str, reason: str = "cancelled", *, actor: str | None = None
    ) -> RunResult:
        """Cancel a run: stop its steps and record CANCELLED. A run executing in another
        process is sent the command, which it applies at once; this returns when it has."""
        return await self.parts.control.cancel(RunId(run_id), reason, actor)

    async def redrive(
        self,
        run_id: str,
        workflow: Workflow | WorkflowIR | None = None,
        *,
        actor: str | None = None,
    ) -> RunResult:
        """Run a failed (or cancelled) run again from where it stopped, as a new run linked to
        it: its completed steps are kept, the failed step and what follows run again."""
        await self.open()
        return await self.parts.control.redrive(RunId(run_id), workflow, actor)

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
        await self.open()
        return await self.parts.control.fork(RunId(run_id), after, set, workflow, actor)

    async def pause(self, run_id: str, reason: str = "paused", *, actor: str | None = None) -> None:
        """Stop starting new steps of a run (those in flight finish and are recorded). The
        run stays PAUSED, across restarts, until :meth:`unpause`. A run executing in another
        process is sent the command; this returns once it is applied."""
        await self.parts.control.pause(RunId(run_id), reason, actor)

    async def unpause(self, run_id: str, *, actor: str | None = None) -> RunResult:
        """Let a paused run go on; waits for it to finish when it goes on here (a run held
        by another process is told to go on there, and this returns once it has)."""
        return await self.parts.control.unpause(RunId(run_id), actor)


def _make_store(store: Store | str | os.PathLike[str] | None) -> Store:
    if store is None or isinstance(store, str | os.PathLike):
        return open_store(store)
    return store
