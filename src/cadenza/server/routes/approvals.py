"""Approvals: those waiting for the caller, one request with what it shows, and deciding.

Deciding is not a server role: the engine checks that the caller's configured user is one of
the step's approvers (by name or role), that quorum counts distinct people, and that nobody
decides twice, and records every refusal in the run's log. A caller sees an approval of a
run it may not otherwise see when the request names it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.server.access import Caller
from cadenza.server.commands import Operations
from cadenza.server.deps import CallerDep, OpsDep, RequestDep, problems
from cadenza.server.models import Approval, ApprovalPage, Decision, RunOut
from cadenza.server.problems import Problem
from cadenza.server.views import (
    APPROVAL_CURSOR,
    approval_from_log,
    approval_position,
    encode_cursor,
    run_json,
)
from cadenza.store.base import RunRecord

router = APIRouter(tags=["approvals"])

StepPath = Annotated[str, Path(min_length=1, max_length=1000, description="The step's path")]
RunIdPath = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/v1/approvals", response_model=ApprovalPage, responses=problems(422))
async def pending(
    caller: CallerDep,
    ops: OpsDep,
    cursor: Annotated[str | None, Query(pattern=APPROVAL_CURSOR, max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Approvals waiting for a decision the caller may give, oldest first."""
    names = ops.server.access.deciding_names(caller)
    if not names:
        return {"approvals": [], "next_cursor": None}
    after = approval_position(cursor) if cursor is not None else None
    page = await ops.server.engine.store.pending_approvals(
        approvers=names, after=after, limit=limit + 1
    )
    shown = page[:limit]
    more = len(page) > limit
    return {
        "approvals": [p.as_dict() for p in shown],
        "next_cursor": encode_cursor(*shown[-1].cursor) if more and shown else None,
    }


async def _request(
    ops: Operations, caller: Caller, run_id: str, step: str, request: Any, *, required: bool
) -> tuple[RunRecord, dict[str, Any] | None]:
    """The run and the step's latest approval request, if the caller may see either (404
    when there is none and ``required``)."""
    if len(run_id) > 200 or not run_id.isprintable():
        raise RunNotFound(run_id[:200])
    store = ops.server.engine.store
    record = await store.get_run(RunId(run_id))
    events = await store.read_events(record.run_id)
    waiting = record.status is WorkflowStatus.WAITING_APPROVAL
    found = approval_from_log(events, step, record.workflow, waiting)
    names = set(ops.server.access.deciding_names(caller))
    named = found is not None and bool(names & set(found["approvers"]))
    if not named and not ops.sees(caller, record):
        await ops.note(
            caller,
            request,
            "hidden_run",
            f"{caller.shown()} asked for an approval of run {run_id}, which it may not see",
        )
        raise RunNotFound(run_id)
    if found is None and required:
        raise Problem(404, f"step {step!r} of run {run_id} has asked for no approval")
    return record, found


@router.get(
    "/v1/runs/{run_id}/approvals/{step:path}", response_model=Approval, responses=problems(404)
)
async def approval(
    run_id: RunIdPath, step: StepPath, caller: CallerDep, ops: OpsDep, request: RequestDep
) -> dict[str, Any]:
    """A step's approval request: approvers, quorum, the decisions so far, and the state
    slice the step declares (``show``)."""
    _, found = await _request(ops, caller, run_id, step, request, required=True)
    return found or {}


@router.post(
    "/v1/runs/{run_id}/approvals/{step:path}",
    response_model=RunOut,
    responses=problems(202, 403, 404, 409, 422),
)
async def decide(
    run_id: RunIdPath,
    step: StepPath,
    body: Decision,
    caller: CallerDep,
    ops: OpsDep,
    request: RequestDep,
) -> dict[str, Any]:
    """Approve or reject. Refused (403, recorded in the run's log) unless the caller's
    configured user is one of the step's approvers and has not decided it already, and the
    step waits for a decision."""
    record, _ = await _request(ops, caller, run_id, step, request, required=False)
    await ops.decide(caller, record, step, body.approve, body.comment)
    current = await ops.server.engine.store.get_run(record.run_id)
    result = await ops.server.engine.result(record.run_id)
    return run_json(current, result.state)
