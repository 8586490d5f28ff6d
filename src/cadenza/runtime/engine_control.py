"""What an engine does to runs on request: cancel, re-drive, fork (time travel), pause and
unpause, each checked against the workflow's ``allowed_users`` (a refusal is recorded in the
run's log). A run executing in another process is sent the command
(:mod:`cadenza.runtime.commands`) and this waits until it is applied."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from cadenza.core.errors import CadenzaError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId, new_run_id
from cadenza.core.status import WorkflowStatus, check_transition
from cadenza.identity import ApprovalDenied
from cadenza.observe.base import notify
from cadenza.runtime.commands import CANCEL, PAUSE, UNPAUSE
from cadenza.runtime.engine_leases import RunHeld
from cadenza.runtime.fork import check_redrivable, copy_log, cut_after_step
from cadenza.runtime.ownership import next_wake
from cadenza.store.base import RunRecord

if TYPE_CHECKING:
    from cadenza.graph.builder import Workflow
    from cadenza.graph.ir import WorkflowIR
    from cadenza.runtime.engine import Engine, RunResult
    from cadenza.runtime.run import RunExecution


_log = structlog.get_logger("cadenza.engine")


class ControlMixin:
    """Part of :class:`Engine`: commands that change a run's course."""

    async def cancel(
        self: Engine, run_id: str, reason: str = "cancelled", *, actor: str | None = None
    ) -> RunResult:
        """Cancel a run: stop its steps and record CANCELLED. A run executing in another
        process is sent the command, which it applies at once; this returns when it has."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        await self._authorize(record, actor, "cancel")
        if rid in self._active:
            await self._cancel_here(rid, reason)
            return await self.result(rid)
        check_transition(record.status, WorkflowStatus.CANCELLED)
        if not await self._append_status(rid, WorkflowStatus.CANCELLED, reason):
            await self._command(rid, CANCEL, {"reason": reason}, actor)
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

    async def pause(
        self: Engine, run_id: str, reason: str = "paused", *, actor: str | None = None
    ) -> None:
        """Stop starting new steps of a run (those in flight finish and are recorded). The
        run stays PAUSED, across restarts, until :meth:`unpause`. A run executing in another
        process is sent the command; this returns once it is applied."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        await self._authorize(record, actor, "pause")
        check_transition(record.status, WorkflowStatus.PAUSED)
        execution = self._executions.get(rid)
        if execution is not None:
            execution.hold()
            await execution.set_status(WorkflowStatus.PAUSED, reason=reason)
            return
        if not await self._append_status(rid, WorkflowStatus.PAUSED, reason):
            await self._command(rid, PAUSE, {"reason": reason}, actor)

    async def unpause(self: Engine, run_id: str, *, actor: str | None = None) -> RunResult:
        """Let a paused run go on; waits for it to finish when it goes on here (a run held
        by another process is told to go on there, and this returns once it has)."""
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        await self._authorize(record, actor, "unpause")
        check_transition(record.status, WorkflowStatus.RUNNING)
        execution = self._executions.get(rid)
        if execution is not None:
            await execution.set_status(WorkflowStatus.RUNNING)
            execution.release_hold()
            return await self.wait(rid)
        try:
            execution = await self._take(record)
        except RunHeld:
            await self._command(rid, UNPAUSE, {}, actor)
            return await self.result(rid)
        try:
            check_transition(execution.progress.status, WorkflowStatus.RUNNING)
            await execution.set_status(WorkflowStatus.RUNNING)
        except BaseException:
            await self._release(rid, wake_at=next_wake(execution.progress))
            raise
        if await self._apply_on_claim(execution):
            self._start_execution(execution, record.deadline)
        return await self.wait(rid)

    async def _command(
        self: Engine, run_id: RunId, kind: str, data: dict[str, Any], actor: str | None
    ) -> None:
        """Send a command to the engine executing the run; raise if it was refused."""
        record = await self.store.get_run(run_id)
        command = await self._send(record, kind, data, actor or "")
        if command.outcome and command.outcome.startswith("refused"):
            raise CadenzaError(f"run {run_id}: {kind} {command.outcome}")

    def _fresh(self: Engine, ir: WorkflowIR) -> dict[str, Any]:
        """The fields of a run record that a new run, held by this engine, starts with (due,
        so that it is taken over if this engine dies)."""
        now = time.time()
        return {
            "status": WorkflowStatus.RUNNING,
            "created_at": now,
            "updated_at": now,
            "deadline": now + ir.config.timeout if ir.config.timeout else None,
            "owner": self.owner,
            "lease_until": now + self.lease_seconds,
            "epoch": 1,
            "wake_at": now,
        }

    async def _authorize(self: Engine, record: RunRecord, actor: str | None, command: str) -> None:
        """Refuse ``command`` on a run unless :meth:`Directory.authorize` lets ``actor`` give
        it (the workflow's ``allowed_users``; a named actor must be a configured user). The
        refusal is recorded in the run's log (:meth:`_record_refusal`)."""
        try:
            ir = self._resolve(record, None)
        except CadenzaError:
            # The definition is not known here: its allowed_users, as the run recorded them.
            events = await self.store.read_events(record.run_id)
            first = events[0].data if events and events[0].type is EventType.RUN_CREATED else {}
            allowed: tuple[str, ...] = tuple(first.get("allowed_users", ()))
        else:
            allowed = ir.config.allowed_users
        if not allowed and not actor:
            return  # nothing to check, and no directory to load
        try:
            self.directory().authorize(actor, allowed, f"{command} runs of {record.workflow}")
        except ApprovalDenied as exc:
            data = {"actor": actor or "", "command": command, "reason": str(exc)}
            await self._record_refusal(record, EventType.REFUSED, data)
            raise

    async def _record_refusal(
        self: Engine,
        record: RunRecord,
        kind: EventType,
        data: dict[str, Any],
        *,
        path: str = "",
        execution: RunExecution | None = None,
    ) -> bool:
        """Record in a run's log that something asked of it was refused (every failed
        authorisation and every refused decision is logged, ASVS 16.3.2), whatever the run's
        status, a finished run's included. It goes through ``execution`` (the caller's hold on
        the run, else the execution of this engine's that runs it), else this engine holds the
        run for a moment to append it; observers see it either way. ``False`` when it could
        not be recorded, because another live engine holds the run (only the holder may write
        its log) or the store failed: the refusal is then logged here instead, and the caller
        raises it all the same."""
        run_id = record.run_id
        execution = execution or self._executions.get(run_id)
        try:
            if execution is not None:
                await execution.commit(kind, path, data=data)
                return True
            async with self._holding(run_id) as hold:
                if hold is not None:
                    events = await self.store.read_events(run_id)
                    seq = events[-1].seq + 1 if events else 1
                    event = Event(run_id, seq, kind, path, data=data)
                    await self.store.append(run_id, (event,), epoch=hold.epoch)
                    notify(self.observers, event, workflow=record.workflow)
                    return True
            why = "another engine holds the run"
        except StoreError as exc:
            why = str(exc)
        _log.warning(
            "refusal_not_recorded", run_id=run_id, type=str(kind), path=path, why=why, **data
        )
        return False

    async def _append_status(
        self: Engine, run_id: RunId, status: WorkflowStatus, reason: str | None
    ) -> bool:
        """Record a status change of a run nobody executes (holding it meanwhile); ``False``
        if another live engine holds it (send it a command instead)."""
        async with self._holding(run_id) as hold:
            if hold is None:
                return False
            record = await self.store.get_run(run_id)
            check_transition(record.status, status)
            events = await self.store.read_events(run_id)
            data: dict[str, Any] = {"from": str(record.status), "to": str(status)}
            if reason:
                data["reason"] = reason
            seq = events[-1].seq + 1 if events else 1
            event = Event(run_id, seq, EventType.STATUS, data=data)
            await self.store.append(run_id, (event,), status=status, error=reason, epoch=hold.epoch)
            hold.wake_at = None  # paused or finished: nothing to do by itself
        return True
