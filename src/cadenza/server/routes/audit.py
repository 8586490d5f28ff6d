"""The audit trail over the API: verify runs as stored (one, or a page of every run the caller
may see), export a run's compliance record as JSON lines or CSV (streamed a page at a time),
and read the server's own audit log (admins)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.server.deps import CallerDep, OpsDep, RequestDep, RunDep, problems
from cadenza.server.models import AuditVerification
from cadenza.server.tables import RunQuery
from cadenza.server.views import RUN_CURSOR, encode_cursor, run_position

router = APIRouter(tags=["audit"])

_EXPORT_PAGE = 1000


@router.get("/v1/audit/verify", response_model=AuditVerification, responses=problems(403, 404, 422))
async def verify(
    caller: CallerDep,
    ops: OpsDep,
    request: RequestDep,
    run_id: Annotated[str | None, Query(max_length=200, description="One run")] = None,
    cursor: Annotated[str | None, Query(pattern=RUN_CURSOR, max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Check runs as stored (events, hash chain, status against the log, snapshot against
    its fold): ``run_id``, else a page of the runs the caller may see, newest first."""
    from cadenza.observe.audit_store import verify_store

    server = ops.server
    server.access.require(caller, "audit", "verify audit trails")
    more = False
    if run_id is not None:
        record = await ops.run_for(caller, run_id, request)
        ids = [record.run_id]
    else:
        after = run_position(cursor) if cursor is not None else None
        records = await server.tables.list_runs(
            RunQuery(workflows=ops.visible_workflows(caller), after=after, limit=limit + 1)
        )
        more = len(records) > limit
        records = records[:limit]
        ids = [r.run_id for r in records]
    definitions = {(e.name, e.version): e.ir.schema.reducers for e in server.catalog.entries()}
    try:
        checks = await verify_store(server.engine.store, ids, definitions=definitions)
    except RunNotFound:  # deleted meanwhile
        checks = []
    broken = [c.broken for c in checks if c.broken is not None]
    next_cursor = None
    if more and run_id is None:
        last = records[-1]
        next_cursor = encode_cursor(last.created_at, last.run_id)
    return {
        "ok": not broken,
        "runs": len(checks),
        "broken": [
            {"run_id": b.run_id, "seq": b.seq, "reason": str(b.reason), "detail": b.detail}
            for b in broken
        ],
        "next_cursor": next_cursor,
    }


@router.get(
    "/v1/runs/{run_id}/audit",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One record per event: JSON lines, or CSV with a header row",
            "content": {"application/x-ndjson": {}, "text/csv": {}},
        },
        **problems(403, 404, 422),
    },
)
async def export(
    run: RunDep,
    caller: CallerDep,
    ops: OpsDep,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
) -> StreamingResponse:
    """A run's compliance record (who, what, when, why, with the hashes that tie each to the
    chain), streamed a page of events at a time."""
    server = ops.server
    server.access.require(caller, "audit", "export audit trails")
    run_id = RunId(run.run_id)

    async def lines() -> AsyncIterator[str]:
        from cadenza.observe.audit import EXPORT_FIELDS, record

        if format == "csv":
            yield _csv_row(EXPORT_FIELDS)
        after = 0
        while True:
            events = await server.tables.events(run_id, after_seq=after, limit=_EXPORT_PAGE)
            chunk = []
            for event in events:
                row = record(event)
                if format == "jsonl":
                    chunk.append(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    chunk.append(
                        _csv_row(["" if row[k] is None else row[k] for k in EXPORT_FIELDS])
                    )
            if chunk:
                yield "".join(chunk)
            if len(events) < _EXPORT_PAGE:
                return
            after = events[-1].seq

    media = "application/x-ndjson" if format == "jsonl" else "text/csv; charset=utf-8"
    disposition = f'attachment; filename="{run_id}.{format}"'
    return StreamingResponse(lines(), media_type=media,
                             headers={"Content-Disposition": disposition})  # fmt: skip


def _csv_row(values: Any) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(list(values))
    return out.getvalue()


@router.get("/v1/audit/log", responses=problems(403, 422))
async def server_log(
    caller: CallerDep,
    ops: OpsDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, list[dict[str, Any]]]:
    """The server's audit log (authentication failures; refusals that concern no run),
    oldest first after entry ``after``."""
    ops.server.access.require(caller, "admin", "read the server's audit log")
    entries = await ops.server.tables.audit_log(after=after, limit=limit)
    return {
        "entries": [
            {
                "id": e.id,
                "at": e.at,
                "kind": e.kind,
                "identity": e.identity,
                "method": e.method,
                "path": e.path,
                "client": e.client,
                "reason": e.reason,
            }
            for e in entries
        ]
    }
