"""A worker: claims runs that have work to do from a shared store and executes them, many at
once, until told to stop; then lets the steps in flight finish and hands the runs back.

Several workers (processes, machines) share one store without a broker or coordinator: each
claims due runs itself (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so no run goes to two),
holds them by a renewed lease, and wakes on the store's hints (``LISTEN``/``NOTIFY``) with a
slow poll as the safety net. A worker only claims runs of the workflows it was given (by name
and definition version) and of the queues it serves; given no workflows, it claims any run
and loads its definition from the run's target."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog

from cadenza.core.errors import StoreError, StoreUnavailable
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.runtime.engine import Engine

_log = structlog.get_logger("cadenza.worker")


class StepsInFlight:
    """An observer that knows which step attempts have started and not yet ended, per run:
    what a graceful shutdown waits for."""

    def __init__(self) -> None:
        self.started: dict[RunId, set[tuple[str, int]]] = {}
        self.changed = asyncio.Event()

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        kind = event.type
        if kind is EventType.STEP_STARTED:
            self.started.setdefault(event.run_id, set()).add((event.path, event.attempt))
        elif kind is EventType.STEP_COMPLETED or kind is EventType.STEP_FAILED:
            attempts = self.started.get(event.run_id)
            if attempts is not None:
                attempts.discard((event.path, event.attempt))
                if not attempts:
                    del self.started[event.run_id]
            self.changed.set()

    def forget(self, keep: Sequence[RunId]) -> None:
        """Drop what is known of runs other than ``keep`` (ended or abandoned ones)."""
        for run_id in self.started.keys() - set(keep):
            del self.started[run_id]

    def busy(self, runs: Sequence[RunId]) -> list[RunId]:
        """The runs among ``runs`` with a step attempt in flight."""
        return [r for r in runs if self.started.get(r)]


class Worker:
    """Executes runs claimed from ``engine``'s store, at most ``concurrency`` at once.

    ``workflows`` are the definitions this worker executes (registered on the engine); with
    none, any run whose target can be imported. ``queues``: the queues served (``None``:
    all). ``poll_interval``: seconds between looks for work when no hint arrives;
    ``listen=False`` turns hints off (the poll alone then finds the work)."""

    def __init__(
        self,
        engine: Engine,
        *,
        workflows: Sequence[Workflow | WorkflowIR] = (),
        targets: dict[str, Workflow | WorkflowIR] | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        listen: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.engine = engine
        for workflow in workflows:
            engine.register(workflow)
        for target, workflow in (targets or {}).items():
            engine.register(workflow, target=target)
        known = bool(workflows or targets)
        self.workflows: list[tuple[str, str]] | None = engine.workflows if known else None
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.listen = listen
        self.steps = StepsInFlight()
        engine.observers = (*engine.observers, self.steps)
        self._wake = asyncio.Event()
        self._reported: set[RunId] = set()

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        """Claim and execute runs until ``stop`` is set (or, ``once``, until nothing is due
        and nothing is in flight). Runs still in flight are left running: call
        :meth:`shutdown` next."""
        engine = self.engine
        held, intake, outage = engine.parts.held, engine.parts.intake, engine.outage
        await engine.open()
        engine.use_hints = self.listen
        engine.parts.sleepers.wakes_own_runs = False  # this loop claims every due run
        engine.on_wake(self._wake.set)
        _log.info(
            "worker_started",
            owner=engine.owner,
            concurrency=self.concurrency,
            queues=self.queues,
            workflows=[name for name, _ in self.workflows] if self.workflows else "any",
        )
        while not stop.is_set():
            self._wake.clear()
            self.steps.forget(held.ids())
            free = self.concurrency - engine.in_flight
            started = 0
            if free > 0:
                try:
                    problems, taken = await intake.pick_up(
                        limit=free, workflows=self.workflows, queues=self.queues
                    )
                except StoreUnavailable as exc:  # the database is away: look again later
                    outage.failed(exc, "claiming runs")
                    problems, taken = {}, []
                except StoreError as exc:
                    _log.warning("claim_failed", error=str(exc))
                    problems, taken = {}, []
                else:
                    outage.back()
                started = len(taken)
                self._report(problems)
            if started and started == free:
                continue  # there may be more due: look again at once
            if once and not started and not engine.in_flight:
                return
            await _first(stop, self._wake, self.poll_interval)

    async def shutdown(self, grace: float) -> int:
        """Stop starting steps, let those in flight finish (at most ``grace`` seconds), then
        hand every run back to the store at once, due, for other workers (their steps not yet
        started run there). Returns how many runs were handed back mid-step."""
        engine, clock = self.engine, self.engine.clock
        held = engine.parts.held
        for run in held:
            run.execution.hold()
        limit = clock.monotonic() + grace
        while True:
            busy = self.steps.busy(held.ids())
            if not busy or clock.monotonic() >= limit:
                break
            self.steps.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with clock.timeout(min(0.5, limit - clock.monotonic())):
                    await self.steps.changed.wait()
        busy = self.steps.busy(held.ids())
        handed = engine.in_flight
        await engine.close()
        _log.info("worker_stopped", handed_back=handed, interrupted=len(busy))
        return len(busy)

    def _report(self, problems: dict[RunId, str]) -> None:
        for run_id, why in problems.items():
            if run_id not in self._reported:
                self._reported.add(run_id)
                _log.warning("run_not_resumed", run_id=run_id, reason=why)


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, at most ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
