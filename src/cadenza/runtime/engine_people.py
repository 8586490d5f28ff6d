"""What an engine does for people: approvals (decide, list what waits) and signals. A signal
to a run executing in another process is sent to it as a command."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cadenza.core.errors import CadenzaError
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.identity import Directory
from cadenza.observe.notify import notify
from cadenza.runtime.commands import SIGNAL
from cadenza.runtime.engine_leases import RunHeld
from cadenza.runtime.ownership import held_elsewhere, next_wake
from cadenza.steps.approval import decided

if TYPE_CHECKING:
    from cadenza.runtime.engine import Engine, RunResult

# ``limit=None``: every pending approval (a page as large as any store could hold).
_ALL = 2**62


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
        it stops again.

        A decision that cannot be taken is refused and the refusal recorded in the run's log
        (``approval_refused``): :class:`ApprovalDenied` for an actor who is not a configured
        user allowed to decide, :class:`CadenzaError` for a run that is not waiting, a step
        that is not waiting for a decision, and a second decision by the same actor (a
        decision is final)."""
        await self.open()
        people = directory or self.directory()
        record = await self.store.get_run(RunId(run_id))
        refused = {"actor": actor, "approve": approve}
        try:
            people.check_user(actor, f"decide {step!r}")
            if record.status is not WorkflowStatus.WAITING_APPROVAL:
                raise CadenzaError(f"run {run_id} is {record.status}, not waiting for an approval")
        except CadenzaError as exc:
            await self._record_refusal(
                record, EventType.APPROVAL_REFUSED, {**refused, "reason": str(exc)}, path=step
            )
            raise
        execution = await self._take(record)
        try:
            try:
                _check_decision(execution.progress.approvals, run_id, step, actor, people)
            except CadenzaError as exc:
                await self._record_refusal(
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
            await self._release(record.run_id, wake_at=next_wake(execution.progress))
            raise
        if decided(execution.progress.approvals[step]) is None:  # more approvals needed
            await self._release(record.run_id, wake_at=next_wake(execution.progress))
            return await self.result(run_id)
        self._start_execution(execution, record.deadline)
        return await self.wait(run_id)

    async def pending_approvals(
        self: Engine,
        *,
        for_user: str | None = None,
        directory: Directory | None = None,
        limit: int | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Approvals waiting for a decision (only those ``for_user`` may decide, by name or
        role: nothing for a name that is not a configured user), oldest first (by ``since``,
        then run id and step). ``limit``: at most that many (``None``: all); ``after``: the
        last one of the previous page, to list the next.

        Read from the store's table of pending approvals, which the store keeps with the
        events that open and close them, rather than by folding every waiting run's log."""
        await self.open()
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

    async def signal(
        self: Engine, run_id: str, name: str, payload: Any = None, *, actor: str = ""
    ) -> RunResult:
        """Deliver an external event to a run; a step waiting for ``name`` goes on. A run that
        nobody executes goes on here (the result is returned when it stops again); one that
        another process executes is sent the signal, and the result is its state once that
        process has recorded it."""
        await self.open()
        rid = RunId(run_id)
        record = await self.store.get_run(rid)
        if record.status.terminal:
            raise CadenzaError(f"run {run_id} is {record.status}; it takes no more signals")
        data = {"name": name, "payload": payload, "actor": actor}
        execution = self._executions.get(rid)
        if execution is not None:
            await execution.commit(EventType.SIGNAL, data=data)
            return await self.wait(rid)
        if not held_elsewhere(record, self.owner, time.time()):
            try:
                execution = await self._take(record)
            except RunHeld:
                execution = None
            if execution is not None:
                await execution.commit(EventType.SIGNAL, data=data)
                go = await self._apply_on_claim(execution)
                if go and execution.progress.status is WorkflowStatus.RUNNING:
                    self._start_execution(execution, record.deadline)
                    return await self.wait(run_id)
                if go:
                    await self._release(rid, wake_at=next_wake(execution.progress))
                return await self.result(run_id)
        command = await self._send(await self.store.get_run(rid), SIGNAL, data, actor)
        if command.outcome and command.outcome.startswith("refused"):
            raise CadenzaError(f"run {run_id}: signal {name!r} {command.outcome}")
        return await self.result(run_id)


def _check_decision(
    approvals: Mapping[str, dict[str, Any]], run_id: str, step: str, actor: str, people: Directory
) -> None:
    """Raise why ``actor`` may not decide ``step`` now (the run is held and waiting): the
    step waits for no decision, the actor may not decide it, or has already decided it."""
    request = approvals.get(step)
    if request is None or decided(request) is not None:
        waiting = [p for p, r in approvals.items() if decided(r) is None]
        raise CadenzaError(
            f"step {step!r} of run {run_id} is not waiting for a decision "
            f"(waiting: {', '.join(waiting) or 'none'})"
        )
    people.check(actor, request["approvers"], f"decide {step!r}")
    earlier = next((d for d in request["decisions"] if d["actor"] == actor), None)
    if earlier is not None:
        verdict = "approved" if earlier["approve"] else "rejected"
        raise CadenzaError(
            f"{actor} has already decided on {step!r} ({verdict}); a decision is final"
        )
