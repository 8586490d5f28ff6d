"""What an engine does to runs on request: resume, cancel, re-drive, fork (time travel),
pause and unpause, and deliver signals, each checked against the workflow's
``allowed_users`` (a refusal is recorded in the run's log). A run executing in another process
is sent the command (:mod:`cadenza.runtime.commands`), and this waits until it is applied:
by that process, or here if it dies first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from cadenza.core.errors import CadenzaError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId, new_run_id
from cadenza.core.status import WorkflowStatus, check_transition
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.runtime.alarms import Sleepers
from cadenza.runtime.commands import CANCEL, PAUSE, SIGNAL, UNPAUSE, Inbox
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.driver import RunDriver
from cadenza.runtime.fork import check_redrivable, copy_log, cut_after_step
from cadenza.runtime.guard import Guard
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.intake import Intake
from cadenza.runtime.leases import LeaseKeeper, RunHeld
from cadenza.runtime.ownership import held_elsewhere
from cadenza.runtime.results import Results, RunResult
from cadenza.store.base import Command, RunRecord, Store

_log = structlog.get_logger("cadenza.engine")

#: Statuses of runs that have work to do (a ROLLBACK still has compensations to run).
ACTIVE = (WorkflowStatus.INITIALIZING, WorkflowStatus.RUNNING, WorkflowStatus.ROLLBACK)


@dataclass(slots=True)
class ResumeReport:
    results: list[RunResult] = field(default_factory=list)
    errors: dict[RunId, str] = field(default_factory=dict)


class Control:
    """Commands that change the course of runs, here or wherever they execute."""

    def __init__(
        self,
        store: Store,
        definitions: Definitions,
        held: HeldRuns,
        leases: LeaseKeeper,
        intake: Intake,
        inbox: Inbox,
        driver: RunDriver,
        guard: Guard,
        results: Results,
        sleepers: Sleepers,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.held = held
        self.leases = leases
        self.intake = intake
        self.inbox = inbox
        self.driver = driver
        self.guard = guard
        self.results = results
        self.sleepers = sleepers

    async def resume(self, run_id: RunId, workflow: Workflow | WorkflowIR | None) -> RunResult:
        """Continue an unfinished run from its last committed step and wait for it."""
        if run_id in self.held:
            return await self.results.wait(run_id)
        record = await self.store.get_run(run_id)
        if record.status not in (*ACTIVE, WorkflowStatus.WAITING_APPROVAL):
            if workflow is not None:
                self.definitions.register(workflow)
            return await self.results.result(run_id)
        execution = await self.intake.take(record, workflow)
        _log.info(
            "run_resumed",
            run_id=run_id,
            workflow=execution.ir.name,
            from_seq=execution.progress.seq,
        )
        await self.intake.go_on(execution, record.deadline)
        return await self.results.wait(run_id)

    async def resume_all(self) -> ResumeReport:
        """Resume every unfinished run that has work to do now, adopt those that sleep, and
        wait for them all (see :meth:`Engine.resume_all`)."""
        report = ResumeReport()
        started: list[RunId] = []
        while True:
            problems, taken = await self.intake.pick_up(limit=10_000, workflows=None, queues=None)
            report.errors.update(problems)
            started += taken
            if not taken:
                break
        started += await self.sleepers.adopt(set(started))
        waits = (self.results.wait(rid) for rid in started)
        results = await asyncio.gather(*waits, return_exceptions=True)
        for run_id, result in zip(started, results, strict=True):
            if isinstance(result, CadenzaError):
                _log.warning("resume_failed", run_id=run_id, error=str(result))
                report.errors[run_id] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                report.results.append(result)
        return report

    async def cancel(self, run_id: RunId, reason: str, actor: str | None) -> RunResult:
        record = await self.store.get_run(run_id)
        await self.guard.authorize(record, actor, "cancel")
        if run_id in self.held:
            await self.held.cancel(run_id, reason)
            return await self.results.result(run_id)
        check_transition(record.status, WorkflowStatus.CANCELLED)
        if not await self._append_status(run_id, WorkflowStatus.CANCELLED, reason):
            await self._command(run_id, CANCEL, {"reason": reason}, actor)
        return await self.results.result(run_id)

    # -- re-drive, time travel -----------------------------------------------------------------

    async def redrive(
        self, run_id: RunId, workflow: Workflow | WorkflowIR | None, actor: str | None
    ) -> RunResult:
        source = await self.store.get_run(run_id)
        await self.guard.authorize(source, actor, "re-drive")
        if source.status not in (WorkflowStatus.FAILED, WorkflowStatus.CANCELLED):
            raise CadenzaError(
                f"run {run_id} is {source.status}; only FAILED or CANCELLED runs can be re-driven"
            )
        events = await self.store.read_events(source.run_id)
        check_redrivable(events)
        return await self._start_copy(source, events, None, None, None, workflow)

    async def fork(
        self,
        run_id: RunId,
        after: str,
        patch: Mapping[str, Any] | None,
        workflow: Workflow | WorkflowIR | None,
        actor: str | None,
    ) -> RunResult:
        source = await self.store.get_run(run_id)
        await self.guard.authorize(source, actor, "fork")
        events = await self.store.read_events(source.run_id)
        return await self._start_copy(
            source, events, cut_after_step(events, after), after, patch, workflow
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
        ir = self.definitions.resolve(source, workflow)
        if patch:
            patch = ir.schema.validate_input(patch)
        rid = new_run_id()
        record = source.evolve(
            run_id=rid, error=None, parent_run_id=source.run_id, **self.leases.fresh(ir)
        )
        copied = copy_log(
            events, rid, upto=upto, parent=source.run_id, from_step=after, patch=patch
        )
        await self.store.create_run(record, copied)
        _log.info("run_forked", run_id=rid, parent=source.run_id, after=after)
        return await self.resume(rid, ir)

    # -- pause ---------------------------------------------------------------------------------

    async def pause(self, run_id: RunId, reason: str, actor: str | None) -> None:
        record = await self.store.get_run(run_id)
        await self.guard.authorize(record, actor, "pause")
        check_transition(record.status, WorkflowStatus.PAUSED)
        execution = self.held.execution(run_id)
        if execution is not None:
            execution.hold()
            await execution.set_status(WorkflowStatus.PAUSED, reason=reason)
            return
        if not await self._append_status(run_id, WorkflowStatus.PAUSED, reason):
            await self._command(run_id, PAUSE, {"reason": reason}, actor)

    async def unpause(self, run_id: RunId, actor: str | None) -> RunResult:
        record = await self.store.get_run(run_id)
        await self.guard.authorize(record, actor, "unpause")
        check_transition(record.status, WorkflowStatus.RUNNING)
        execution = self.held.execution(run_id)
        if execution is not None:
            await execution.set_status(WorkflowStatus.RUNNING)
            execution.release_hold()
            return await self.results.wait(run_id)
        try:
            execution = await self.intake.take(record)
        except RunHeld:
            await self._command(run_id, UNPAUSE, {}, actor)
            return await self.results.result(run_id)
        try:
            check_transition(execution.progress.status, WorkflowStatus.RUNNING)
            await execution.set_status(WorkflowStatus.RUNNING)
        except BaseException:
            await self.leases.hand_back(run_id, execution.progress)
            raise
        await self.intake.go_on(execution, record.deadline)
        return await self.results.wait(run_id)

    # -- signals -------------------------------------------------------------------------------

    async def signal(self, run_id: RunId, name: str, payload: Any, actor: str) -> RunResult:
        record = await self.store.get_run(run_id)
        if record.status.terminal:
            raise CadenzaError(f"run {run_id} is {record.status}; it takes no more signals")
        data = {"name": name, "payload": payload, "actor": actor}
        execution = self.held.execution(run_id)
        if execution is not None:
            await execution.commit(EventType.SIGNAL, data=data)
            return await self.results.wait(run_id)
        if not held_elsewhere(record, self.leases.owner, self.leases.clock.now()):
            try:
                execution = await self.intake.take(record)
            except RunHeld:
                execution = None
            if execution is not None:
                await execution.commit(EventType.SIGNAL, data=data)
                go = await self.inbox.apply_on_claim(execution)
                if go and execution.progress.status is WorkflowStatus.RUNNING:
                    self.driver.start(execution, record.deadline)
                    return await self.results.wait(run_id)
                if go:
                    await self.leases.hand_back(run_id, execution.progress)
                return await self.results.result(run_id)
        command = await self._send(await self.store.get_run(run_id), SIGNAL, data, actor)
        if command.outcome and command.outcome.startswith("refused"):
            raise CadenzaError(f"run {run_id}: signal {name!r} {command.outcome}")
        return await self.results.result(run_id)

    # -- runs nobody executes, and runs another process executes -------------------------------

    async def _append_status(
        self, run_id: RunId, status: WorkflowStatus, reason: str | None
    ) -> bool:
        """Record a status change of a run nobody executes (holding it meanwhile); ``False``
        if another live engine holds it (send it a command instead)."""
        async with self.leases.holding(run_id) as hold:
            if hold is None:
                return False
            record = await self.store.get_run(run_id)
            check_transition(record.status, status)
            events = await self.store.read_events(run_id)
            data: dict[str, Any] = {"from": str(record.status), "to": str(status)}
            if reason:
                data["reason"] = reason
            seq = events[-1].seq + 1 if events else 1
            event = Event(run_id, seq, EventType.STATUS, data=data, ts=self.leases.clock.now())
            await self.store.append(run_id, (event,), status=status, error=reason, epoch=hold.epoch)
            hold.wake_at = None  # paused or finished: nothing to do by itself
        return True

    async def _command(
        self, run_id: RunId, kind: str, data: dict[str, Any], actor: str | None
    ) -> None:
        """Send a command to the engine executing the run; raise if it was refused."""
        record = await self.store.get_run(run_id)
        command = await self._send(record, kind, data, actor or "")
        if command.outcome and command.outcome.startswith("refused"):
            raise CadenzaError(f"run {run_id}: {kind} {command.outcome}")

    async def _send(
        self,
        record: RunRecord,
        kind: str,
        data: dict[str, Any],
        actor: str,
        timeout: float | None = None,
    ) -> Command:
        """Record a command for the engine executing ``record`` and wait until it is applied
        (by that engine, or here if it dies first); returns the command with its outcome.
        Gives up after ``timeout`` seconds (default: two leases)."""
        command_id = await self.store.send_command(record.run_id, kind, data, actor=actor)
        _log.info("command_sent", run_id=record.run_id, kind=kind, to=record.owner)
        clock = self.leases.clock
        wait = timeout if timeout is not None else 2 * self.leases.lease_seconds
        limit = clock.monotonic() + wait
        delay = 0.02
        while True:
            command = await self.store.get_command(command_id)
            if command is None:
                raise StoreError(f"command {command_id} to run {record.run_id} vanished")
            if command.outcome is not None:
                return command
            current = await self.store.get_run(record.run_id)
            if not held_elsewhere(current, self.leases.owner, clock.now()):
                with contextlib.suppress(RunHeld):  # taken by another meanwhile: wait on
                    await self._take_and_apply(current)
                    continue
            if clock.monotonic() > limit:
                raise CadenzaError(
                    f"{kind} to run {record.run_id} is recorded (command {command_id}), but "
                    f"{current.owner}, which executes the run, has not applied it yet; it will "
                    "be applied when the run next reaches a step boundary"
                )
            await asyncio.sleep(delay)  # waiting for another process: polled, not timed
            delay = min(delay * 2, 0.25)

    async def _take_and_apply(self, record: RunRecord) -> None:
        """Claim a run nobody executes, apply its waiting commands, and go on with it here if
        it has work to do."""
        if record.status.terminal:
            for command in await self.store.pending_commands([record.run_id]):
                await self.store.finish_command(command.id, f"refused: the run is {record.status}")
            return
        execution = await self.intake.take(record)
        await self.intake.go_on(execution, record.deadline)
