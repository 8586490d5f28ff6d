"""``/v1/runs``: listing (filtered, cursor-paged, newest first), a run, its events, its state
after any event, and the commands that change its course."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from cadenza.core.errors import CadenzaError
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.server.deps import CallerDep, OpsDep, RunDep, problems
from cadenza.server.models import (
    CancelRequest,
    EventPage,
    ForkRequest,
    PauseRequest,
    RunOut,
    RunPage,
    SignalRequest,
    StateOut,
)
from cadenza.server.problems import Problem
from cadenza.server.tables import RunQuery
from cadenza.server.views import (
    RUN_CURSOR,
    encode_cursor,
    event_json,
    run_json,
    run_position,
    state_after,
)

router = APIRouter(prefix="/v1/runs", tags=["runs"])

_MAX_EVENTS = 1000


@router.get("", response_model=RunPage, responses=problems(403, 422))
async def list_runs(
    caller: CallerDep,
    ops: OpsDep,
    workflow: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[
        list[WorkflowStatus] | None, Query(description="Any of these (repeatable)")
    ] = None,
    created_after: Annotated[
        float | None, Query(ge=-1e12, le=1e12, description="Epoch seconds, inclusive")
    ] = None,
    created_before: Annotated[
        float | None, Query(ge=-1e12, le=1e12, description="Epoch seconds, exclusive")
    ] = None,
    parent: Annotated[str | None, Query(max_length=200, description="Copies of this run")] = None,
    cursor: Annotated[str | None, Query(pattern=RUN_CURSOR, max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs the caller may see, newest first (by creation time, then id); pass
    ``next_cursor`` back as ``cursor`` for the next page."""
    ops.server.access.require(caller, "read", "list runs")
    after = None
    if cursor is not None:
        created, run_id = run_position(cursor)
        after = (created, run_id)
    query = RunQuery(
        workflows=ops.visible_workflows(caller),
        workflow=workflow,
        statuses=status or None,
        created_after=created_after,
        created_before=created_before,
        parent=parent,
        after=after,
        limit=limit + 1,
    )
    records = await ops.server.tables.list_runs(query)
    page = records[:limit]
    more = len(records) > limit
    last = page[-1] if page else None
    return {
        "runs": [run_json(r) for r in page],
        "next_cursor": encode_cursor(last.created_at, last.run_id) if more and last else None,
    }


@router.get("/{run_id}", response_model=RunOut, responses=problems(404))
async def get_run(run: RunDep, ops: OpsDep) -> dict[str, Any]:
    """A run, with its current state."""
    result = await ops.server.engine.result(run.run_id)
    return run_json(run, result.state)


@router.get("/{run_id}/events", response_model=EventPage, responses=problems(404, 422))
async def get_events(
    run: RunDep,
    ops: OpsDep,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=_MAX_EVENTS)] = 100,
) -> dict[str, Any]:
    """A page of the run's log, oldest first, after ``after_seq``."""
    events = await ops.server.tables.events(run.run_id, after_seq=after_seq, limit=limit + 1)
    page = events[:limit]
    return {
        "events": [event_json(e) for e in page],
        "next_after_seq": page[-1].seq if len(events) > limit else None,
    }


@router.get("/{run_id}/state", response_model=StateOut, responses=problems(404, 422))
async def get_state(
    run: RunDep,
    ops: OpsDep,
    seq: Annotated[
        int | None, Query(ge=0, le=2**62, description="After this event (default: the last)")
    ] = None,
) -> dict[str, Any]:
    """The run's state (and status) right after event ``seq``: the fold of its log up to
    there, with the workflow's reducers where this server knows the workflow."""
    events = await ops.server.engine.store.read_events(run.run_id)
    last = events[-1].seq if events else 0
    upto = last if seq is None else seq
    if upto > last:
        raise Problem(404, f"run {run.run_id} has no event {upto} (it has {last})")
    entry = ops.server.catalog.get(run.workflow, run.version)
    reducers = entry.ir.schema.reducers if entry else {}
    state, status = state_after(events, reducers, upto)
    return {"run_id": run.run_id, "seq": upto, "status": status, "state": state}


async def _current(ops: Any, run_id: RunId) -> dict[str, Any]:
    record = await ops.server.engine.store.get_run(run_id)
    result = await ops.server.engine.result(run_id)
    return run_json(record, result.state)


@router.post("/{run_id}/cancel", response_model=RunOut, responses=problems(403, 404, 409, 422))
async def cancel_run(
    run: RunDep,
    caller: CallerDep,
    ops: OpsDep,
    body: Annotated[CancelRequest, Body()] = CancelRequest(),  # noqa: B008
) -> dict[str, Any]:
    """Cancel an unfinished run."""
    await ops.cancel(caller, run, body.reason)
    return await _current(ops, run.run_id)


@router.post("/{run_id}/pause", response_model=RunOut, responses=problems(403, 404, 409, 422))
async def pause_run(
    run: RunDep,
    caller: CallerDep,
    ops: OpsDep,
    body: Annotated[PauseRequest, Body()] = PauseRequest(),  # noqa: B008
) -> dict[str, Any]:
    """Stop starting new steps of a run until it is unpaused."""
    await ops.pause(caller, run, body.reason)
    return await _current(ops, run.run_id)


@router.post("/{run_id}/unpause", response_model=RunOut, responses=problems(202, 403, 404, 409))
async def unpause_run(run: RunDep, caller: CallerDep, ops: OpsDep) -> dict[str, Any]:
    """Let a paused run go on."""
    await ops.unpause(caller, run)
    return await _current(ops, run.run_id)


@router.post(
    "/{run_id}/retry",
    status_code=201,
    response_model=RunOut,
    responses=problems(202, 403, 404, 409),
)
async def retry_run(
    run: RunDep, caller: CallerDep, ops: OpsDep, response: Response
) -> dict[str, Any]:
    """Re-drive a FAILED or CANCELLED run from where it stopped, as a new run linked to it
    (the answer is the new run)."""
    new = await ops.retry(caller, run)
    response.headers["Location"] = f"/v1/runs/{new}"
    return await _current(ops, new)


@router.post(
    "/{run_id}/fork",
    status_code=201,
    response_model=RunOut,
    responses=problems(202, 403, 404, 409, 422),
)
async def fork_run(
    run: RunDep, caller: CallerDep, ops: OpsDep, body: ForkRequest, response: Response
) -> dict[str, Any]:
    """Time travel: a new run from the state right after step ``from_step`` of this run,
    with ``set`` applied over it (the answer is the new run)."""
    try:
        new = await ops.fork(caller, run, body.from_step, body.set)
    except KeyError as exc:  # pragma: no cover - the engine names unknown steps itself
        raise CadenzaError(f"no step {exc} in run {run.run_id}") from None
    response.headers["Location"] = f"/v1/runs/{new}"
    return await _current(ops, new)


@router.post(
    "/{run_id}/signals", response_model=RunOut, responses=problems(202, 403, 404, 409, 422)
)
async def signal_run(
    run: RunDep, caller: CallerDep, ops: OpsDep, body: SignalRequest
) -> dict[str, Any]:
    """Deliver a named external event to the run (a step waiting for it goes on)."""
    await ops.signal(caller, run, body.name, body.payload)
    return await _current(ops, run.run_id)
