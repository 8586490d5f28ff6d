"""What an engine does to runs on request: cancel, re-drive, fork (time travel), pause and
unpause, each checked against the workflow's ``allowed_users``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from cadenza.errors import CadenzaError
from cadenza.identity import ApprovalDenied
from cadenza.ids import RunId, new_run_id
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.fork import check_redrivable, copy_log, cut_after_step
from cadenza.runtime.ownership import LEASE_SECONDS, owner_is_dead
from cadenza.runtime.status import WorkflowStatus, check_transition
from cadenza.store.base import RunRecord

if TYPE_CHECKING:
    from cadenza.graph.builder import Workflow
    from cadenza.graph.ir import WorkflowIR
    from cadenza.runtime.engine import RunResult


_log = structlog.get_logger("cadenza.engine")


class ControlMixin:
    """Part of :class:`Engine`: commands that change a run's course."""

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


def _held_elsewhere(record: RunRecord, owner: str, now: float) -> bool:
    """The run's lease belongs to another engine that is alive and has not let it expire."""
    if record.owner in (None, owner) or owner_is_dead(record.owner):
        return False
    return (record.lease_until or 0) > now
