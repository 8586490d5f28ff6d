"""What an engine does for the people who approve: recording a decision (the run goes on
here once it is decided) and listing the approvals that wait for someone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cadenza.core.errors import CadenzaError
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.identity import Directory
from cadenza.observe.notify import notify
from cadenza.runtime.decisions import check_decision, decided
from cadenza.runtime.driver import RunDriver
from cadenza.runtime.guard import Guard
from cadenza.runtime.intake import Intake
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.results import Results, RunResult
from cadenza.store.base import Store

# ``limit=None``: every pending approval (a page as large as any store could hold).
_ALL = 2**62


class Approvals:
    """Decisions on the approvals runs wait for, checked against ``directory()``."""

    def __init__(
        self,
        store: Store,
        directory: Callable[[], Directory],
        leases: LeaseKeeper,
        intake: Intake,
        driver: RunDriver,
        guard: Guard,
        results: Results,
    ) -> None:
        self.store = store
        self.directory = directory
        self.leases = leases
        self.intake = intake
        self.driver = driver
        self.guard = guard
        self.results = results

    async def decide(
        self,
        run_id: RunId,
        step: str,
        *,
        actor: str,
        approve: bool,
        comment: str,
        directory: Directory | None,
    ) -> RunResult:
        """Record ``actor``'s decision (see :meth:`Engine.decide`)."""
        people = directory or self.directory()
        record = await self.store.get_run(run_id)
        refused = {"actor": actor, "approve": approve}
        try:
            people.check_user(actor, f"decide {step!r}")
            if record.status is not WorkflowStatus.WAITING_APPROVAL:
                raise CadenzaError(f"run {run_id} is {record.status}, not waiting for an approval")
        except CadenzaError as exc:
            await self.guard.record_refusal(
                record, EventType.APPROVAL_REFUSED, {**refused, "reason": str(exc)}, path=step
            )
            raise
        execution = await self.intake.take(record)
        try:
            try:
                check_decision(execution.progress.approvals, run_id, step, actor, people)
            except CadenzaError as exc:
                await self.guard.record_refusal(
                    record,
                    EventType.APPROVAL_REFUSED,
                    {**refused, "reason": str(exc)},
                    path=step,
                    execution=execution,
                )
                raise
            await execution.commit(
                EventType.APPROVAL_DECISION,
                step,
                data={"actor": actor, "approve": approve, "comment": comment},
            )
            verdict = "approved" if approve else "rejected"
            notify(
                execution.ir.config.notification_channels,
                f"{execution.ir.name} run {record.run_id}, step {step}: {verdict} by {actor}"
                + (f": {comment}" if comment else ""),
                run_id=record.run_id,
                workflow=execution.ir.name,
                step=step,
                actor=actor,
                approve=approve,
                comment=comment,
            )
        except BaseException:
            await self.leases.hand_back(run_id, execution.progress)
            raise
        if decided(execution.progress.approvals[step]) is None:  # more approvals needed
            await self.leases.hand_back(run_id, execution.progress)
            return await self.results.result(run_id)
        self.driver.start(execution, record.deadline)
        return await self.results.wait(run_id)

    async def pending(
        self,
        *,
        for_user: str | None,
        directory: Directory | None,
        limit: int | None,
        after: Mapping[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """The approvals waiting for a decision (see :meth:`Engine.pending_approvals`)."""
        names: list[str] | None = None
        if for_user:
            names = (directory or self.directory()).names(for_user)
            if not names:
                return []
        cursor = None
        if after is not None:
            cursor = (float(after["since"]), str(after["run_id"]), str(after["step"]))
        page = await self.store.pending_approvals(
            approvers=names, after=cursor, limit=_ALL if limit is None else limit
        )
        return [p.as_dict() for p in page]
