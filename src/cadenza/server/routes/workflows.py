"""``/v1/workflows``: the workflows this server knows (those the caller may see), their
definitions, graphs and versions, and starting runs of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Response

from cadenza.server.catalog import Entry, definition_json
from cadenza.server.commands import request_digest
from cadenza.server.deps import CallerDep, OpsDep, RequestDep, ServerDep, problems
from cadenza.server.models import (
    RunOut,
    StartRun,
    WorkflowDefinition,
    WorkflowGraph,
    WorkflowOut,
    WorkflowVersion,
)
from cadenza.server.problems import Problem
from cadenza.server.views import run_json

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

NamePath = Annotated[str, Path(min_length=1, max_length=200, description="A workflow's name")]
VersionQuery = Annotated[
    str | None,
    Query(max_length=64, description="A version this server loaded (default: the current one)"),
]
_KEY_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))


def _summary(entry: Entry, versions: list[str]) -> dict[str, Any]:
    ir = entry.ir
    return {
        "name": ir.name,
        "version": ir.version,
        "versions": versions,
        "steps": list(ir.graph.steps),
        "state": ir.schema.describe(),
        "allowed_users": list(ir.config.allowed_users),
        "source_format": entry.source_format,
    }


@router.get("", response_model=list[WorkflowOut], responses=problems(403))
async def list_workflows(caller: CallerDep, server: ServerDep) -> list[dict[str, Any]]:
    """The workflows the caller may see, by name, each with its current version."""
    server.access.require(caller, "read", "list workflows")
    catalog = server.catalog
    out = []
    for name in catalog.names():
        entry = catalog.current(name)
        if entry is not None and server.access.sees(caller, entry.ir.config.allowed_users):
            out.append(_summary(entry, [e.version for e in catalog.versions(name)]))
    return out


@router.get("/{name}", response_model=WorkflowOut, responses=problems(404))
async def get_workflow(name: NamePath, caller: CallerDep, ops: OpsDep) -> dict[str, Any]:
    """One workflow, with every version this server loaded."""
    entry = ops.entry_for(caller, name)
    return _summary(entry, [e.version for e in ops.server.catalog.versions(name)])


@router.get("/{name}/definition", response_model=WorkflowDefinition, responses=problems(404))
async def get_definition(
    name: NamePath, caller: CallerDep, ops: OpsDep, version: VersionQuery = None
) -> dict[str, Any]:
    """The definition as compiled (the description its version hashes) and, for a workflow
    loaded from a YAML or JSON file, the file as written."""
    entry = ops.entry_for(caller, name, version)
    return {
        "name": entry.name,
        "version": entry.version,
        "ir": definition_json(entry.ir),
        "source": entry.source,
        "source_format": entry.source_format,
    }


@router.get("/{name}/graph", response_model=WorkflowGraph, responses=problems(404))
async def get_graph(
    name: NamePath,
    caller: CallerDep,
    ops: OpsDep,
    version: VersionQuery = None,
    format: Annotated[Literal["mermaid", "dot"], Query()] = "mermaid",
) -> dict[str, Any]:
    """The workflow as a Mermaid flowchart (or Graphviz DOT text)."""
    from cadenza.graph.render import to_dot, to_mermaid

    entry = ops.entry_for(caller, name, version)
    text = to_mermaid(entry.ir) if format == "mermaid" else to_dot(entry.ir)
    return {"name": entry.name, "version": entry.version, "format": format, "graph": text}


@router.get("/{name}/versions", response_model=list[WorkflowVersion], responses=problems(404))
async def get_versions(name: NamePath, caller: CallerDep, ops: OpsDep) -> list[dict[str, Any]]:
    """Every version this server loaded or that runs in the store were started on, oldest
    first, with how many runs each has."""
    current = ops.entry_for(caller, name)
    loaded = [e.version for e in ops.server.catalog.versions(name)]
    counted = {v.version: v for v in await ops.server.tables.versions(name)}
    order = [*[v for v in counted if v not in loaded], *loaded]
    return [
        {
            "version": version,
            "loaded": version in loaded,
            "current": version == current.version,
            "runs": counted[version].runs if version in counted else 0,
            "first_run": counted[version].first if version in counted else None,
            "last_run": counted[version].last if version in counted else None,
        }
        for version in order
    ]


@router.post(
    "/{name}/runs",
    status_code=201,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "A retried request: the run its key started"},
        **problems(403, 404, 409, 413, 422),
    },
)
async def start_run(
    name: NamePath,
    caller: CallerDep,
    ops: OpsDep,
    request: RequestDep,
    response: Response,
    body: Annotated[StartRun, Body()] = StartRun(),  # noqa: B008
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Retrying with the same key and body returns the same run; with "
            "another body, 409",
        ),
    ] = None,
) -> dict[str, Any]:
    """Start a run. The input is checked against the workflow's state (422 naming each
    wrong field's path); on a server that does not execute runs, it is queued for the
    workers (status INITIALIZING)."""
    entry = ops.entry_for(caller, name, body.version)
    idempotency = None
    if idempotency_key is not None:
        if not idempotency_key or not set(idempotency_key) <= _KEY_CHARS:
            raise Problem(
                422,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                errors=[{"path": "$.header.Idempotency-Key", "message": "invalid key"}],
            )
        digest = request_digest(name, body.model_dump(mode="json"))
        idempotency = (idempotency_key, digest)
    run_id, created = await ops.start(caller, entry, body.input, body.queue, request, idempotency)
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/runs/{run_id}"
    record = await ops.server.engine.store.get_run(run_id)
    return run_json(record)
