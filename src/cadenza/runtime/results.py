"""What a run came to: its status, error and state, read from the store or awaited from the
engine executing it (followed through the sleeps it is suspended for)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.alarms import Sleepers
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.held import HeldRuns
from cadenza.store.base import Store


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


class Results:
    """Results of runs, for the engine's callers."""

    def __init__(
        self, store: Store, held: HeldRuns, sleepers: Sleepers, definitions: Definitions
    ) -> None:
        self.store = store
        self.held = held
        self.sleepers = sleepers
        self.definitions = definitions

    async def wait(self, run_id: RunId) -> RunResult:
        """Wait until a run executing here finishes or stops (for a decision, a signal, or
        paused); a run suspended here while sleeping is followed through its sleep. A run not
        executing here: as the store has it."""
        while True:
            held = self.held.get(run_id)
            if held is not None:
                result = await asyncio.shield(held.task)
                if run_id not in self.sleepers:
                    return result
            elif run_id in self.sleepers:
                await self.sleepers.woken(run_id)
            else:
                return await self.result(run_id)

    async def result(self, run_id: RunId) -> RunResult:
        """The run as the store has it: status, error and the state folded from its log."""
        record = await self.store.get_run(run_id)
        progress = await self.definitions.load(record, None)
        return RunResult(run_id, record.workflow, record.status, progress.state, record.error)
