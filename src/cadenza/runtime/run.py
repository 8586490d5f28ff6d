"""One run in progress: its log position, folded progress, and the commit path every step
result goes through (store first, then the fold, then observers)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from cadenza.core.clock import SYSTEM_CLOCK, Clock
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.state import apply_update
from cadenza.core.status import WorkflowStatus, check_transition
from cadenza.graph.ir import Graph, StepKind, WorkflowIR
from cadenza.observe.base import Observer, notify
from cadenza.resilience.breaker import Breakers
from cadenza.resilience.limits import BulkheadRegistry
from cadenza.resilience.retry import NO_RETRY, RetryPolicy
from cadenza.runtime.kinds import Executor as StepExecutor
from cadenza.runtime.ownership import FencedStore
from cadenza.runtime.progress import Progress
from cadenza.runtime.scheduler import GraphDriver
from cadenza.runtime.scope import Scope
from cadenza.runtime.sleeps import Sleeps

#: A snapshot of the folded progress is stored with every this-many events.
SNAPSHOT_EVERY = 200

#: The step instance (run, path) whose completion is stored with the next commit of its run
#: instead of on its own: set while the last step of a loop body executes, whose loop commits
#: the iteration's decision right after it (see :mod:`cadenza.steps.loop`).
_DEFERRED: ContextVar[tuple[RunId, str] | None] = ContextVar("cadenza_deferred", default=None)


class RunExecution:
    """One run being executed: what its steps commit through (``store``, fenced by the lease
    it is held under), the executor of each step kind, the clock, and what every run of the
    engine shares (thread pool, retry default, bulkheads, breakers)."""

    def __init__(
        self,
        *,
        run_id: RunId,
        ir: WorkflowIR,
        store: FencedStore,
        progress: Progress,
        executors: Mapping[StepKind, StepExecutor],
        clock: Clock = SYSTEM_CLOCK,
        observers: Sequence[Observer] = (),
        thread_pool: Executor | None = None,
        default_retry: RetryPolicy = NO_RETRY,
        bulkheads: BulkheadRegistry | None = None,
        breakers: Breakers | None = None,
        sleeps: Sleeps | None = None,
    ) -> None:
        self.run_id = run_id
        self.ir = ir
        self.store = store
        self.progress = progress
        self.executors = executors
        self.clock = clock
        self._now = clock.now
        self.observers = tuple(observers)
        self.thread_pool = thread_pool
        self.limit = asyncio.Semaphore(ir.config.max_parallel_steps)
        self.reducers = ir.schema.reducers
        self.bulkheads = bulkheads or BulkheadRegistry()
        self.breakers = breakers or Breakers()
        retries = ir.config.max_retries
        if retries is not None:
            default_retry = replace(default_retry, max_attempts=retries + 1)
        self.default_retry = default_retry
        #: Durable sleeps (timers, backoffs) go through this: see :mod:`cadenza.runtime.sleeps`.
        self.sleeps = sleeps or Sleeps(clock=clock)
        self.top = Scope(key="", state=progress.state)
        self._notes: list[Event] = []
        self._hold: asyncio.Event | None = None  # set while paused: steps wait before starting
        self._since_snapshot = 0

    # -- log -------------------------------------------------------------------------------

    def _event(
        self, type: EventType, path: str, scope: str, attempt: int, data: dict[str, Any] | None
    ) -> Event:
        self.progress.seq += 1
        seq = self.progress.seq
        return Event(self.run_id, seq, type, path, scope, attempt, data or {}, self._now())

    async def commit(
        self,
        type: EventType,
        path: str = "",
        *,
        scope: Scope | None = None,
        attempt: int = 0,
        data: dict[str, Any] | None = None,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: bool = False,
    ) -> None:
        """Store an event durably (with any notes before it, in one append), fold it, apply
        its updates to ``scope`` and tell observers. Returns once the store has committed.

        The event is numbered and handed to the store without an ``await`` in between, so
        concurrent steps of one run append in sequence order.

        The completion of a loop body's last step is the exception: it is folded and applied
        at once but stored with the run's next commit, which its loop makes right after it
        (the iteration's decision), so that an iteration costs one append."""
        event = self._event(type, path, scope.key if scope else "", attempt, data)
        applied = self.progress.apply(event)
        if scope is not None and scope.key:
            for update in applied:
                apply_update(scope.state, update, self.reducers)
        if (
            type is EventType.STEP_COMPLETED
            and status is None
            and not snapshot
            and _DEFERRED.get() == (self.run_id, path)
        ):
            self._notes.append(event)
            return
        batch: Sequence[Event] = (event,)
        if self._notes:
            batch, self._notes = (*self._notes, event), []
        self._since_snapshot += len(batch)
        taken = None
        if snapshot or self._since_snapshot >= SNAPSHOT_EVERY:
            taken = self.progress.snapshot(final=bool(status and status.terminal))
            self._since_snapshot = 0
        await self.store.append(self.run_id, batch, status=status, error=error, snapshot=taken)
        if self.observers:
            for e in batch:
                notify(self.observers, e, workflow=self.ir.name)

    def note(
        self,
        type: EventType,
        path: str = "",
        *,
        scope: Scope | None = None,
        attempt: int = 0,
        data: dict[str, Any] | None = None,
    ) -> None:
        """An informational event (not needed to resume): stored with the next commit."""
        event = self._event(type, path, scope.key if scope else "", attempt, data)
        self.progress.apply(event)
        self._notes.append(event)

    def announce(
        self, type: EventType, path: str, *, scope: Scope | None = None, attempt: int = 0
    ) -> None:
        """A live event for observers only (``seq`` 0, never stored): a step attempt starting.
        Recovery and the audit trail need only outcomes (each attempt ends in a stored
        ``step_failed`` or ``step_completed`` carrying its ``started_at``), and keeping the
        start out of the log halves the store's work per step."""
        if self.observers:
            key = scope.key if scope else ""
            event = Event(self.run_id, 0, type, path, key, attempt, {}, self._now())
            notify(self.observers, event, workflow=self.ir.name)

    async def set_status(self, new: WorkflowStatus, *, reason: str | None = None) -> None:
        check_transition(self.progress.status, new)
        data: dict[str, Any] = {"from": str(self.progress.status), "to": str(new)}
        if reason:
            data["reason"] = reason
        # A run that goes on again has no current error to show (the log keeps the history).
        error = reason if reason else ("" if not new.terminal else None)
        # A finished run keeps its final state in a snapshot: reading it needs no definition
        # (whose reducers a fold would need) and no replay.
        await self.commit(
            EventType.STATUS, data=data, status=new, error=error, snapshot=new.terminal
        )

    def note_breaker_changes(self, path: str, scope: Scope) -> None:
        """Record the circuit-breaker transitions the last call caused, in this run's log."""
        for t in self.breakers.drain():
            self.note(
                EventType.BREAKER,
                path,
                scope=scope,
                data={
                    "breaker": t.breaker,
                    "from": str(t.from_state),
                    "to": str(t.to_state),
                    "reason": t.reason,
                    "failure_rate": t.failure_rate,
                },
            )

    def hold(self) -> None:
        """Pause: steps not yet started wait (those in flight finish)."""
        if self._hold is None:
            self._hold = asyncio.Event()

    def release_hold(self) -> None:
        if self._hold is not None:
            self._hold.set()
            self._hold = None

    # -- graphs ----------------------------------------------------------------------------

    async def run_graph(
        self, graph: Graph, scope: Scope, prefix: str, *, defer: str | None = None
    ) -> None:
        """Drive ``graph`` in ``scope``; steps already recorded as done are not run again.

        ``defer`` names the step whose completion the caller stores with its own next commit
        (a loop body's last step: see :meth:`commit`)."""
        executors = self.executors
        done = self.progress.done

        async def run_step(name: str) -> tuple[str, ...] | None:
            path = prefix + name
            recorded = done.get(path)
            if recorded is not None:
                route = recorded.get("route")
                return tuple(route) if route is not None else None
            while self._hold is not None:
                await self._hold.wait()
            step = graph.steps[name]
            if name != defer:
                return await self.sleeps.step(executors[step.kind](self, step, scope, path))
            token = _DEFERRED.set((self.run_id, path))
            try:
                return await self.sleeps.step(executors[step.kind](self, step, scope, path))
            finally:
                _DEFERRED.reset(token)

        def on_skip(name: str) -> None:
            path = prefix + name
            if path not in done:
                self.note(EventType.STEP_SKIPPED, path, scope=scope, data={"reason": "no route"})

        with self.sleeps.children():
            if len(graph.steps) == 1:  # a lone step (most branches): no scheduling to do
                await run_step(graph.entry[0])
            else:
                await GraphDriver(graph, run_step, on_skip).run()
