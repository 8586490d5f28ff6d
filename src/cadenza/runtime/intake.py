"""How runs come to execute here: one claimed on purpose (to resume or control it), or every
due one a poll claims (a worker's, or this engine's waking the runs it suspended); each loaded
with its definition, its waiting commands applied, and started if it has work to do."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from cadenza.core.errors import CadenzaError
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.runtime.commands import Inbox
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.driver import RunDriver
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.ownership import approval_due
from cadenza.runtime.run import RunExecution
from cadenza.store.base import Command, RunRecord, Store

_log = structlog.get_logger("cadenza.engine")

#: Seconds before a run this engine could not load (unknown or changed definition) is due again.
UNRESOLVED_BACKOFF = 5.0


class Intake:
    """Claims runs for this engine and starts them (through ``driver``)."""

    def __init__(
        self,
        store: Store,
        definitions: Definitions,
        leases: LeaseKeeper,
        inbox: Inbox,
        driver: RunDriver,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.leases = leases
        self.inbox = inbox
        self.driver = driver

    async def take(
        self, record: RunRecord, workflow: Workflow | WorkflowIR | None = None
    ) -> RunExecution:
        """Claim a run for this engine and load it, ready to continue (raises
        :class:`~cadenza.runtime.leases.RunHeld` if another live engine holds it)."""
        ir = self.definitions.resolve(record, workflow)
        epoch = await self.leases.claim(record)
        try:
            progress = await self.definitions.load(record, ir)
            return self.driver.execution(ir, record.run_id, progress, epoch)
        except BaseException:
            await self.leases.release(record.run_id, wake_at=record.wake_at)
            raise

    async def go_on(self, execution: RunExecution, deadline: float | None) -> bool:
        """Apply the commands waiting for a run just taken, and execute it if it has work to
        do (it is released if not); returns whether it started."""
        if await self.inbox.apply_on_claim(execution):
            self.driver.start(execution, deadline)
            return True
        return False

    async def pick_up(
        self,
        *,
        limit: int,
        workflows: Sequence[tuple[str, str]] | None,
        queues: Sequence[str] | None,
        run_ids: Sequence[RunId] | None = None,
    ) -> tuple[dict[RunId, str], list[RunId]]:
        """Claim up to ``limit`` due runs (of the ``(name, version)`` workflows, queues and
        ``run_ids`` given; ``None``: any) and start those with work to do now; returns the
        runs that could not be started, with why, and those started."""
        claimed = await self.leases.claim_due(
            limit=limit, workflows=workflows, queues=queues, run_ids=run_ids
        )
        problems: dict[RunId, str] = {}
        if not claimed:
            return problems, []
        commands: dict[RunId, list[Command]] = {r.run_id: [] for r in claimed}
        for command in await self.store.pending_commands(list(commands)):
            commands[command.run_id].append(command)
        outcomes = await asyncio.gather(
            *(self._start_claimed(r, commands[r.run_id]) for r in claimed)
        )
        started = []
        for record, outcome in zip(claimed, outcomes, strict=True):
            if outcome is True:
                started.append(record.run_id)
            elif isinstance(outcome, str):
                problems[record.run_id] = outcome
        return problems, started

    async def _start_claimed(self, record: RunRecord, pending: list[Command]) -> bool | str:
        """Load a run just claimed and start it if it has work to do now; ``True`` if started,
        why not (a string) if it could not be."""
        run_id = record.run_id
        clock = self.leases.clock
        try:
            ir = self.definitions.resolve(record, None)
            progress = await self.leases.outage.retry(
                "loading a run", lambda: self.definitions.load(record, ir)
            )
            execution = self.driver.execution(ir, run_id, progress, record.epoch)
        except CadenzaError as exc:
            _log.warning("run_not_resumed", run_id=run_id, error=str(exc))
            await self.leases.release(run_id, wake_at=clock.now() + UNRESOLVED_BACKOFF)
            return str(exc)
        if not await self.inbox.apply_on_claim(execution, pending):
            return False
        progress = execution.progress
        if progress.status is WorkflowStatus.WAITING_APPROVAL and not approval_due(
            progress, clock.now()
        ):
            await self.leases.hand_back(run_id, progress)
            return False
        _log.debug("run_claimed", run_id=run_id, workflow=ir.name, epoch=record.epoch)
        self.driver.start(execution, record.deadline)
        return True
