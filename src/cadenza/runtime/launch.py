"""How a new run comes to be: who starts it is checked, its input validated, its record and
first events stored, and it is started here (held by this engine) or queued for any worker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from cadenza.core.errors import CadenzaError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId, new_run_id
from cadenza.core.status import WorkflowStatus
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.identity import ApprovalDenied, Directory
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.driver import RunDriver
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.progress import Progress
from cadenza.store.base import RunRecord, Store

_log = structlog.get_logger("cadenza.engine")


class Launcher:
    """Records new runs, and starts those this engine executes."""

    def __init__(
        self,
        store: Store,
        definitions: Definitions,
        directory: Callable[[], Directory],
        leases: LeaseKeeper,
        driver: RunDriver,
    ) -> None:
        self.store = store
        self.definitions = definitions
        self.directory = directory
        self.leases = leases
        self.driver = driver

    async def start(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None,
        run_id: str | None,
        target: str,
        actor: str | None,
        queue: str,
    ) -> RunId:
        """Record the run, held by this engine, and start it (see :meth:`Engine.start`)."""
        ir, record, created = self._new_run(workflow, input, run_id, target, actor, queue, True)
        running = Event(
            record.run_id,
            2,
            EventType.STATUS,
            data={"from": str(WorkflowStatus.INITIALIZING), "to": str(WorkflowStatus.RUNNING)},
            ts=created.ts,
        )
        await self.store.create_run(record, (created, running))
        progress = Progress(reducers=ir.schema.reducers)
        progress.apply_all((created, running))
        execution = self.driver.execution(ir, record.run_id, progress, record.epoch)
        self.driver.start(execution, record.deadline)
        return record.run_id

    async def submit(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None,
        run_id: str | None,
        target: str,
        actor: str | None,
        queue: str,
    ) -> RunId:
        """Record the run, due for any worker (see :meth:`Engine.submit`)."""
        _, record, created = self._new_run(workflow, input, run_id, target, actor, queue, False)
        await self.store.create_run(record, (created,))
        return record.run_id

    def _new_run(
        self,
        workflow: Workflow | WorkflowIR,
        input: Mapping[str, Any] | None,
        run_id: str | None,
        target: str,
        actor: str | None,
        queue: str,
        held: bool,
    ) -> tuple[WorkflowIR, RunRecord, Event]:
        """Check who starts it and its input; the record (held by this engine, or queued for
        any worker) and its first event."""
        if not queue:
            raise CadenzaError("queue must be a non-empty name")
        ir = self.definitions.register(workflow, target=target)
        if ir.config.allowed_users or actor:  # else there is nothing to check
            try:
                self.directory().authorize(actor, ir.config.allowed_users, f"start {ir.name}")
            except ApprovalDenied as exc:
                # No run exists to hold the refusal in its log: the operational log keeps it.
                _log.warning("start_refused", workflow=ir.name, actor=actor, reason=str(exc))
                raise
        values = ir.schema.validate_input(input or {})
        rid = RunId(run_id) if run_id else new_run_id()
        now = self.leases.clock.now()
        fields: dict[str, Any] = (
            self.leases.fresh(ir)
            if held
            else {
                "created_at": now,
                "updated_at": now,
                "deadline": now + ir.config.timeout if ir.config.timeout else None,
                "wake_at": now,
            }
        )
        record = RunRecord(
            run_id=rid,
            workflow=ir.name,
            version=ir.version,
            target=target or self.definitions.target(ir),
            input=values,
            queue=queue,
            **fields,
        )
        data: dict[str, Any] = {"workflow": ir.name, "version": ir.version, "input": values}
        if ir.config.allowed_users:  # so that an engine without the definition can check
            data["allowed_users"] = list(ir.config.allowed_users)
        created = Event(rid, 1, EventType.RUN_CREATED, data=data, ts=now)
        return ir, record, created
