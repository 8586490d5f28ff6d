"""What an engine does for people: approvals (decide, list what waits) and signals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cadenza.errors import CadenzaError
from cadenza.identity import ApprovalDenied, Directory
from cadenza.ids import RunId
from cadenza.observe.notify import notify
from cadenza.runtime.events import EventType
from cadenza.runtime.progress import Progress
from cadenza.runtime.status import WorkflowStatus
from cadenza.steps.approval import decided

if TYPE_CHECKING:
    from cadenza.runtime.engine import Engine, RunResult


class PeopleMixin:
    """Part of :class:`Engine`: approvals and signals."""

    def directory(self: Engine) -> Directory:
        """Users and roles (``cadenza.toml`` or ``$CADENZA_CONFIG``), read once."""
        if self._directory is None:
            self._directory = Directory.load()
        return self._directory

    async def decide(
        self: Engine,
        run_id: str,
        step: str,
        *,
        actor: str,
        approve: bool,
        comment: str = "",
        directory: Directory | None = None,
    ) -> RunResult:
        """Record ``actor``'s decision on the approval ``step`` is waiting for. With a
        rejection or a quorum of approvals the run continues here; the result is returned when
        it stops again. An actor who may not decide is refused, and the refusal recorded."""
        await self.open()
        record = await self.store.get_run(RunId(run_id))
        if record.status is not WorkflowStatus.WAITING_APPROVAL:
            raise CadenzaError(f"run {run_id} is {record.status}, not waiting for an approval")
        execution = await self._take(record)
        try:
            request = execution.progress.approvals.get(step)
            waiting = [p for p, r in execution.progress.approvals.items() if decided(r) is None]
            if request is None or decided(request) is not None:
                shown = ", ".join(waiting) or "none"
                raise CadenzaError(
                    f"step {step!r} of run {run_id} is not waiting for a decision "
                    f"(waiting: {shown})"
                )
            if any(d["actor"] == actor for d in request["decisions"]):
                raise CadenzaError(f"{actor} has already decided on {step!r}")
            try:
                (directory or self.directory()).check(
                    actor, request["approvers"], f"decide {step!r}"
                )
            except ApprovalDenied as exc:
                await execution.commit(
                    EventType.APPROVAL_REFUSED, step, data={"actor": actor, "reason": str(exc)}
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
            await self._release(record.run_id)
            raise
        if decided(execution.progress.approvals[step]) is None:
            await self._release(record.run_id)  # more approvals needed
            return await self.result(run_id)
        self._start_execution(execution, record.deadline)
        return await self.wait(run_id)

    async def pending_approvals(
        self: Engine, *, for_user: str | None = None, directory: Directory | None = None
    ) -> list[dict[str, Any]]:
        """Every approval waiting for a decision (for one user, by name or role)."""
        people = directory or (self.directory() if for_user else None)
        out = []
        for record in await self.store.list_runs(
            status=[WorkflowStatus.WAITING_APPROVAL], limit=100_000
        ):
            progress = await self._load(record, None)
            for path, request in progress.approvals.items():
                if decided(request) is not None:
                    continue
                if for_user and people and not people.matches(for_user, request["approvers"]):
                    continue
                out.append(
                    {
                        "run_id": record.run_id,
                        "workflow": record.workflow,
                        "step": path,
                        "approvers": request["approvers"],
                        "quorum": request["quorum"],
                        "approved_by": [d["actor"] for d in request["decisions"]],
                        "summary": request.get("summary"),
                        "show": request.get("show"),
                        "since": request["since"],
                        "deadline": request.get("deadline"),
                    }
                )
        return out

    async def signal(
        self: Engine, run_id: str, name: str, payload: Any = None, *, actor: str = ""
    ) -> RunResult:
        """Deliver an external event to a run; a step waiting for ``name`` goes on."""
        await self.open()
        record = await self.store.get_run(RunId(run_id))
        if record.status.terminal:
            raise CadenzaError(f"run {run_id} is {record.status}; it takes no more signals")
        execution = await self._take(record)
        await execution.commit(
            EventType.SIGNAL, data={"name": name, "payload": payload, "actor": actor}
        )
        if record.status is WorkflowStatus.RUNNING:
            self._start_execution(execution, record.deadline)
            return await self.wait(run_id)
        await self._release(record.run_id)
        return await self.result(run_id)


def _approval_due(progress: Progress) -> bool:
    """A waiting run has something to do: an open request past its deadline, or a request
    already decided (its process died before going on)."""
    now = time.time()
    for path, request in progress.approvals.items():
        if path in progress.done:
            continue
        outcome = decided(request)
        deadline = request.get("deadline")
        if outcome is not None or (deadline is not None and deadline <= now):
            return True
    return False
