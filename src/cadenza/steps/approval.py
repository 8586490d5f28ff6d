"""HUMAN_APPROVAL: a durable wait for decisions of authorised people.

The step records its request (approvers, quorum, what to show, deadline) and the run stops
executing (WAITING_APPROVAL): no process, thread or connection is held. A decision arrives
through any process that opens the store (``engine.decide``), which resumes the run; this
step then finds the decisions in the log and goes on, or fails the run on a rejection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadenza.core.errors import StepFailed, Suspended
from cadenza.core.events import EventType
from cadenza.graph.ir import Step
from cadenza.observe.notify import notify
from cadenza.runtime.decisions import decided
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_approval(
    run: RunExecution, step: Step, scope: Scope, path: str
) -> tuple[str, ...] | None:
    opts = step.options
    required_for = list(opts.get("required_for") or [])
    if required_for and not any(scope.state.get(flag) for flag in required_for):
        reason = f"approval not required: none of {', '.join(required_for)} holds"
        await run.commit(
            EventType.STEP_SKIPPED, path, scope=scope, data={"reason": reason, "guard": True}
        )
        return None
    request = run.progress.approvals.get(path)
    if request is None:
        timeout = opts.get("timeout")
        await run.commit(
            EventType.APPROVAL_REQUESTED,
            path,
            scope=scope,
            data={
                "approvers": list(opts["approvers"]),
                "quorum": int(opts.get("quorum") or 1),
                "summary": opts.get("summary") or f"approve {step.name}",
                "show": {k: scope.state.get(k) for k in opts.get("show") or []},
                "deadline": run.clock.now() + float(timeout) if timeout else None,
                "on_timeout": opts.get("on_timeout", "reject"),
            },
        )
        request = run.progress.approvals[path]
        _tell(run, path, request, f"approval needed: {request['summary']}")
    outcome = decided(request)
    if outcome is None and _due(request, run.clock.now()):
        outcome = await _time_out(run, scope, path, request)
    if outcome is None:
        raise Suspended(path, f"approval by {' or '.join(request['approvers'])}", approval=True)
    approved, who = outcome
    on_reject = opts.get("on_reject")
    if not approved and not on_reject:
        raise StepFailed(path, f"rejected by {who}", error_type="ApprovalRejected")
    data: dict[str, Any] = {"approved_by" if approved else "rejected_by": who}
    if on_reject:  # a routing approval records where it went, like a conditional
        data["route"] = list(opts.get("approved") or []) if approved else [on_reject]
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data=data)
    return tuple(data["route"]) if on_reject else None


def _tell(run: RunExecution, path: str, request: dict[str, Any], text: str) -> None:
    notify(
        run.ir.config.notification_channels,
        f"{run.ir.name} run {run.run_id}, step {path}: {text} "
        f"(approvers: {', '.join(request['approvers'])})",
        run_id=run.run_id,
        workflow=run.ir.name,
        step=path,
        approvers=list(request["approvers"]),
        show=request.get("show"),
    )


def _due(request: dict[str, Any], now: float) -> bool:
    deadline = request.get("deadline")
    return deadline is not None and deadline <= now


async def _time_out(
    run: RunExecution, scope: Scope, path: str, request: dict[str, Any]
) -> tuple[bool, str] | None:
    """Apply the declared timeout policy: auto-approve, auto-reject, or escalate to others
    (with a new deadline of the same length)."""
    policy = str(request.get("on_timeout") or "reject")
    if policy.startswith("escalate:"):
        approvers = [a.strip() for a in policy.split(":", 1)[1].split(",") if a.strip()]
        length = float(request["deadline"] - request["since"])
        await run.commit(
            EventType.APPROVAL_ESCALATED,
            path,
            scope=scope,
            data={
                "approvers": approvers,
                "deadline": run.clock.now() + length,
                "on_timeout": "reject",
                "reason": "timeout",
            },
        )
        _tell(run, path, run.progress.approvals[path], "approval escalated after its timeout")
        return None
    approve = policy == "approve"
    await run.commit(
        EventType.APPROVAL_DECISION,
        path,
        scope=scope,
        data={"actor": "system:timeout", "approve": approve, "comment": "no decision in time"},
    )
    return decided(run.progress.approvals[path])
