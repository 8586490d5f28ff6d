"""Who may do what to a run, and the record of every refusal: a command on a run is checked
against its workflow's ``allowed_users``, and whatever is refused (a command, a decision) is
written to the run's log whatever its status (ASVS 16.3.2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from cadenza.core.errors import CadenzaError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.identity import ApprovalDenied, Directory
from cadenza.observe.base import notify
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.driver import RunSettings
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.run import RunExecution
from cadenza.store.base import RunRecord, Store

_log = structlog.get_logger("cadenza.engine")


class Guard:
    """Authorisation of commands (users and roles from ``directory()``) and the refusals'
    record."""

    def __init__(
        self,
        store: Store,
        definitions: Definitions,
        directory: Callable[[], Directory],
        held: HeldRuns,
        leases: LeaseKeeper,
        settings: RunSettings,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.directory = directory
        self.held = held
        self.leases = leases
        self.settings = settings

    async def authorize(self, record: RunRecord, actor: str | None, command: str) -> None:
        """Refuse ``command`` on a run unless :meth:`Directory.authorize` lets ``actor`` give
        it (the workflow's ``allowed_users``; a named actor must be a configured user). The
        refusal is recorded in the run's log (:meth:`record_refusal`)."""
        try:
            ir = self.definitions.resolve(record, None)
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
            await self.record_refusal(record, EventType.REFUSED, data)
            raise

    async def record_refusal(
        self,
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
        execution = execution or self.held.execution(run_id)
        try:
            if execution is not None:
                await execution.commit(kind, path, data=data)
                return True
            async with self.leases.holding(run_id) as hold:
                if hold is not None:
                    events = await self.store.read_events(run_id)
                    seq = events[-1].seq + 1 if events else 1
                    now = self.settings.clock.now()
                    event = Event(run_id, seq, kind, path, data=data, ts=now)
                    await self.store.append(run_id, (event,), epoch=hold.epoch)
                    notify(self.settings.observers, event, workflow=record.workflow)
                    return True
            why = "another engine holds the run"
        except StoreError as exc:
            why = str(exc)
        _log.warning(
            "refusal_not_recorded", run_id=run_id, type=str(kind), path=path, why=why, **data
        )
        return False
