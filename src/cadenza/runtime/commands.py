"""Commands to runs: cancel, signal, pause and unpause, and how the engine that holds a run
applies those sent to it.

A process that does not hold a run cannot write to its log (the holder's appends would then
conflict with it, and a fenced store refuses it anyway). So it records the command in the
store, which makes the run due and hints the holder (``NOTIFY`` on PostgreSQL); the holder
applies it between steps (it polls for commands too, as a safety net), and marks it done with
what happened. A run that nobody executes (queued, paused, waiting) is claimed by whoever
applies the command: the sender itself, or the next worker that claims the run. The sender
waits for the outcome (see :mod:`cadenza.runtime.control`); if the holder dies first, the
sender claims the run and applies it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from cadenza.core.errors import CadenzaError, StoreError, StoreUnavailable
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus, check_transition
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.outages import Outage
from cadenza.runtime.run import RunExecution
from cadenza.runtime.wakeups import Wakeups
from cadenza.store.base import Command, Hint, Hints, Store

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


class Inbox:
    """The commands sent to runs this engine holds: those waiting for a run it just claimed,
    and those that arrive while it executes one (looked for by the engine's
    :class:`~cadenza.runtime.heartbeat.Heartbeat`, or found at once from the store's hints,
    which also wake the engine's workers)."""

    def __init__(
        self, store: Store, held: HeldRuns, leases: LeaseKeeper, outage: Outage, wakeups: Wakeups
    ) -> None:
        self.store = store
        self.held = held
        self.leases = leases
        self.outage = outage
        self.wakeups = wakeups
        #: Whether to listen for the store's hints (where it sends them); off: poll only.
        self.use_hints = True
        #: Whether hints arrive now (the poll is slower meanwhile).
        self.hints_live = False
        self._hints: Hints | None = store if isinstance(store, Hints) else None
        self._applied: set[int] = set()  # commands applied (or being applied) here
        self._chores: set[asyncio.Task[Any]] = set()
        self._listening: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether this engine listens for the store's hints."""
        return self._listening is not None

    # -- applying ------------------------------------------------------------------------------

    async def apply_on_claim(
        self, execution: RunExecution, pending: Sequence[Command] | None = None
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
        await self.leases.hand_back(execution.run_id, execution.progress)
        return False

    async def apply_running(self, run_ids: Sequence[RunId]) -> None:
        """Apply the commands waiting for runs this engine is executing."""
        try:
            pending = await self.store.pending_commands(run_ids)
        except StoreUnavailable as exc:  # looked for again at the next poll
            self.outage.failed(exc, "looking for commands")
            return
        except StoreError as exc:
            _log.warning("command_poll_failed", error=str(exc))
            return
        for command in pending:
            execution = self.held.execution(command.run_id)
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

    async def _apply_running(self, execution: RunExecution, command: Command) -> str:
        run_id, data = execution.run_id, command.data
        if command.kind == CANCEL:
            await self.held.cancel(run_id, str(data.get("reason") or "cancelled"))
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

    # -- hints ---------------------------------------------------------------------------------

    def listen(self) -> None:
        """Listen for the store's hints from now on (if it sends them and :attr:`use_hints`
        is set): commands are applied at once, and the engine's workers woken."""
        if self._listening is None and self.use_hints and self._hints is not None:
            self._listening = asyncio.get_running_loop().create_task(self._listen(self._hints))

    async def stop(self) -> None:
        for task in (self._listening, *self._chores):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listening = None

    async def _listen(self, store: Hints) -> None:
        try:
            hint: Hint
            async for hint in store.hints():
                if hint.kind == "ready":
                    self.hints_live = True
                elif hint.kind == "command" and hint.run_id in self.held:
                    assert hint.run_id is not None
                    self.chore(self.apply_running([hint.run_id]))
                self.wakeups.fire()
        except Exception:  # polling still finds the work, just later
            _log.exception("hints_failed")
        finally:
            self.hints_live = False

    def chore(self, work: Coroutine[Any, Any, None]) -> None:
        """Do ``work`` in the background (kept referenced until it ends)."""
        task = asyncio.get_running_loop().create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    @property
    def busy(self) -> bool:
        """Whether commands are being looked for or applied in the background now."""
        return bool(self._chores)


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
