"""The runs an engine executes now, one record each: the task that drives it, its execution
(whose fenced store carries the lease epoch it is held under), and what is happening to it
(its lease was lost, it is being cancelled or suspended). The lease keeper, the driver, the
command inbox and the engine's front all read and change runs through this table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from cadenza.core.errors import CadenzaError
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus, check_transition

if TYPE_CHECKING:
    from cadenza.runtime.results import RunResult
    from cadenza.runtime.run import RunExecution


class HeldRun:
    """One run in flight here."""

    __slots__ = ("cancel_reason", "execution", "lost", "parked", "quiet", "renewing", "task")

    def __init__(self, execution: RunExecution, task: asyncio.Task[RunResult]) -> None:
        self.execution = execution
        self.task = task
        #: Whether its lease is renewed (no longer once it is being released).
        self.renewing = True
        #: Another worker took its lease: the run is abandoned here.
        self.lost = False
        #: Why it is being cancelled (``None``: it is not).
        self.cancel_reason: str | None = None
        #: When it is due, while it is being suspended (it has nothing to do but sleep).
        self.parked: float | None = None
        #: Its log position when it stopped for an outside event (a signal): a signal stored
        #: after it makes the run due again at once.
        self.quiet: int | None = None

    @property
    def run_id(self) -> RunId:
        return self.execution.run_id

    @property
    def epoch(self) -> int:
        """The lease epoch this engine holds the run under (its appends are fenced by it)."""
        return self.execution.store.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.execution.store.epoch = epoch

    async def cancel(self, reason: str) -> None:
        """Stop the run's steps; it records CANCELLED (with ``reason``) as it ends."""
        check_transition(self.execution.progress.status, WorkflowStatus.CANCELLED)
        self.cancel_reason = reason
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.task)


class HeldRuns:
    """The runs this engine executes, by id. ``closing`` is set while the engine closes: its
    runs stop there and stay due in the store, for whoever claims them next."""

    __slots__ = ("_runs", "closing")

    def __init__(self) -> None:
        self._runs: dict[RunId, HeldRun] = {}
        self.closing = False

    def add(self, held: HeldRun) -> None:
        self._runs[held.run_id] = held

    def remove(self, run_id: RunId) -> None:
        self._runs.pop(run_id, None)

    def get(self, run_id: RunId) -> HeldRun | None:
        return self._runs.get(run_id)

    def execution(self, run_id: RunId) -> RunExecution | None:
        """The execution of ``run_id`` if it is in flight here."""
        held = self._runs.get(run_id)
        return held.execution if held is not None else None

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[HeldRun]:
        return iter(list(self._runs.values()))

    def ids(self) -> list[RunId]:
        return list(self._runs)

    def tasks(self) -> list[asyncio.Task[RunResult]]:
        return [held.task for held in self._runs.values()]

    async def cancel(self, run_id: RunId, reason: str) -> None:
        """Cancel a run in flight here: its steps stop, CANCELLED is recorded."""
        held = self._runs.get(run_id)
        if held is None:
            raise CadenzaError(f"run {run_id} is not executing here")
        await held.cancel(reason)
