"""Commands to runs that execute in another process: cancel, signal, pause and unpause.

A process that does not hold a run cannot write to its log (the holder's appends would then
conflict with it, and a fenced store refuses it anyway). So it records the command in the
store, which makes the run due and hints the holder (``NOTIFY`` on PostgreSQL); the holder
applies it between steps (it polls for commands too, as a safety net), and marks it done with
what happened. A run that nobody executes (queued, paused, waiting) is claimed by whoever
applies the command: the sender itself, or the next worker that claims the run. The sender
waits for the outcome; if the holder dies first, the sender claims the run and applies it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from cadenza.core.errors import CadenzaError, StoreError, StoreUnavailable
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus, check_transition
from cadenza.runtime.engine_leases import RunHeld
from cadenza.runtime.ownership import held_elsewhere, next_wake
from cadenza.store.base import Command, RunRecord

if TYPE_CHECKING:
    from cadenza.runtime.engine import Engine
    from cadenza.runtime.run import RunExecution

_log = structlog.get_logger("cadenza.engine")

CANCEL, SIGNAL, PAUSE, UNPAUSE = "cancel", "signal", "pause", "unpause"
KINDS = (CANCEL, SIGNAL, PAUSE, UNPAUSE)

#: What a stopped run may go on from (a paused or finished one may not).
_EXECUTABLE = (
    WorkflowStatus.INITIALIZING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.ROLLBACK,
    WorkflowStatus.WAITING_APPROVAL,
)


class CommandsMixin:
    """Part of :class:`Engine`: sending commands to runs held elsewhere, and applying those
    sent to runs held here."""

    #: Seconds between looks for commands to runs in flight (stores without hints).
    command_poll: float = 0.5

    def _init_commands(self: Engine) -> None:
        self._applied: set[int] = set()  # commands applied (or being applied) here
        self._wakeups: list[Callable[[], None]] = []
        self._chores: set[asyncio.Task[Any]] = set()
        self._hints_task: asyncio.Task[None] | None = None
        self._hints_live = False

    def on_wake(self: Engine, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, must not block) whenever there may be new work:
        a hint from the store, or a run of this engine ending (a slot is free)."""
        self._wakeups.append(callback)
        self._start_background()

    def _wake_workers(self: Engine) -> None:
        for callback in tuple(self._wakeups):
            callback()

    # -- sending -----------------------------------------------------------------------------

    async def _send(
        self: Engine,
        record: RunRecord,
        kind: str,
        data: dict[str, Any],
        actor: str,
        timeout: float | None = None,
    ) -> Command:
        """Record a command for the engine executing ``record`` and wait until it is applied
        (by that engine, or here if it dies first); returns the command with its outcome."""
        command_id = await self.store.send_command(record.run_id, kind, data, actor=actor)
        _log.info("command_sent", run_id=record.run_id, kind=kind, to=record.owner)
        limit = time.monotonic() + (timeout if timeout is not None else 2 * self.lease_seconds)
        delay = 0.02
        while True:
            command = await self.store.get_command(command_id)
            if command is None:
                raise StoreError(f"command {command_id} to run {record.run_id} vanished")
            if command.outcome is not None:
                return command
            current = await self.store.get_run(record.run_id)
            if not held_elsewhere(current, self.owner, time.time()):
                with contextlib.suppress(RunHeld):  # taken by another meanwhile: wait on
                    await self._take_and_apply(current)
                    continue
            if time.monotonic() > limit:
                raise CadenzaError(
                    f"{kind} to run {record.run_id} is recorded (command {command_id}), but "
                    f"{current.owner}, which executes the run, has not applied it yet; it will "
                    "be applied when the run next reaches a step boundary"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _take_and_apply(self: Engine, record: RunRecord) -> None:
        """Claim a run nobody executes, apply its waiting commands, and go on with it here if
        it has work to do."""
        if record.status.terminal:
            for command in await self.store.pending_commands([record.run_id]):
                await self.store.finish_command(command.id, f"refused: the run is {record.status}")
            return
        execution = await self._take(record)
        if await self._apply_on_claim(execution):
            self._start_execution(execution, record.deadline)

    # -- applying ----------------------------------------------------------------------------

    async def _apply_on_claim(
        self: Engine, execution: RunExecution, pending: Sequence[Command] | None = None
    ) -> bool:
        """Apply the commands waiting for a run just claimed (not executing yet; ``pending``
        if the caller read them already); returns whether it should execute. If not, it is
        released."""
        if pending is None:
            pending = await self.store.pending_commands([execution.run_id])
        for command in pending:
            if command.id in self._applied:
                continue
            self._applied.add(command.id)
            outcome = await _apply_stopped(execution, command)
            await self.store.finish_command(command.id, outcome)
            _log.info(
                "command_applied", run_id=execution.run_id, kind=command.kind, outcome=outcome
            )
        if execution.progress.status in _EXECUTABLE:
            return True
        await self._release(execution.run_id, wake_at=next_wake(execution.progress))
        return False

    async def _apply_commands(self: Engine, run_ids: Sequence[RunId]) -> None:
        """Apply the commands waiting for runs this engine is executing."""
        try:
            pending = await self.store.pending_commands(run_ids)
        except StoreUnavailable as exc:  # looked for again at the next beat
            self._outage.failed(exc, "looking for commands")
            return
        except StoreError as exc:
            _log.warning("command_poll_failed", error=str(exc))
            return
        for command in pending:
            execution = self._executions.get(command.run_id)
            if execution is None or command.id in self._applied:
                continue
            self._applied.add(command.id)
            try:
                outcome = await self._apply_running(execution, command)
            except StoreError as exc:  # not applied (e.g. the lease was lost): not done
                self._applied.discard(command.id)
                _log.warning("command_failed", run_id=command.run_id, error=str(exc))
                continue
            except CadenzaError as exc:
                outcome = f"refused: {exc}"
            with contextlib.suppress(StoreError):
                await self.store.finish_command(command.id, outcome)
            _log.info("command_applied", run_id=command.run_id, kind=command.kind, outcome=outcome)

    async def _apply_running(self: Engine, execution: RunExecution, command: Command) -> str:
        run_id, data = execution.run_id, command.data
        if command.kind == CANCEL:
            await self._cancel_here(run_id, str(data.get("reason") or "cancelled"))
            return "cancelled"
        if command.kind == SIGNAL:
            await execution.commit(EventType.SIGNAL, data=_signal_data(command))
            return "delivered"
        if command.kind == PAUSE:
            check_transition(execution.progress.status, WorkflowStatus.PAUSED)
            execution.hold()
            await execution.set_status(WorkflowStatus.PAUSED, reason=data.get("reason"))
            return "paused"
        if command.kind == UNPAUSE:
            check_transition(execution.progress.status, WorkflowStatus.RUNNING)
            await execution.set_status(WorkflowStatus.RUNNING)
            execution.release_hold()
            return "unpaused"
        return f"refused: unknown command {command.kind!r}"

    async def _cancel_here(self: Engine, run_id: RunId, reason: str) -> None:
        """Cancel a run executing in this engine: its steps stop, CANCELLED is recorded."""
        task = self._active.get(run_id)
        execution = self._executions.get(run_id)
        if task is None or execution is None:
            raise CadenzaError(f"run {run_id} is not executing here")
        check_transition(execution.progress.status, WorkflowStatus.CANCELLED)
        self._cancel_reasons[run_id] = reason
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


async def _apply_stopped(execution: RunExecution, command: Command) -> str:
    """Apply a command to a run that is held here but not executing; the outcome."""
    status, data = execution.progress.status, command.data
    try:
        if command.kind == CANCEL:
            reason = str(data.get("reason") or "cancelled")
            check_transition(status, WorkflowStatus.CANCELLED)
            await execution.set_status(WorkflowStatus.CANCELLED, reason=reason)
            return "cancelled"
        if command.kind == SIGNAL:
            if status.terminal:
                return f"refused: the run is {status}"
            await execution.commit(EventType.SIGNAL, data=_signal_data(command))
            return "delivered"
        if command.kind == PAUSE:
            check_transition(status, WorkflowStatus.PAUSED)
            await execution.set_status(WorkflowStatus.PAUSED, reason=data.get("reason"))
            return "paused"
        if command.kind == UNPAUSE:
            check_transition(status, WorkflowStatus.RUNNING)
            await execution.set_status(WorkflowStatus.RUNNING)
            return "unpaused"
    except StoreError:
        raise  # not applied: whoever holds the run now applies it
    except CadenzaError as exc:
        return f"refused: {exc}"
    return f"refused: unknown command {command.kind!r}"


def _signal_data(command: Command) -> dict[str, Any]:
    data = command.data
    return {"name": data["name"], "payload": data.get("payload"), "actor": command.actor}
