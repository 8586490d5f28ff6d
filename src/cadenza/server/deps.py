"""What routes are given: the server's parts, the authenticated caller, and the run a path
names once the caller may see it (so that a stream never starts for a run it may not)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cadenza.server.access import Caller
from cadenza.server.authn import RequestInfo
from cadenza.server.commands import Operations
from cadenza.server.problems import Problem
from cadenza.server.service import Server
from cadenza.store.base import RunRecord

__all__ = [
    "CallerDep",
    "OpsDep",
    "RequestDep",
    "RunDep",
    "ServerDep",
    "problems",
]

#: Declares the scheme in the OpenAPI document; the header is read and checked below.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (cdz_...) or an OIDC access token of a configured issuer",
)


def _server(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def _ops(request: Request) -> Operations:
    ops: Operations = request.app.state.ops
    return ops


def request_info(request: Request) -> RequestInfo:
    client = request.client.host if request.client else ""
    return RequestInfo(request.method, request.url.path, client)


async def _caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    server = _server(request)
    return await server.authenticator.authenticate(
        request.headers.get("authorization"), request_info(request)
    )


ServerDep = Annotated[Server, Depends(_server)]
OpsDep = Annotated[Operations, Depends(_ops)]
CallerDep = Annotated[Caller, Depends(_caller)]
RequestDep = Annotated[RequestInfo, Depends(request_info)]
RunIdPath = Annotated[str, Path(min_length=1, max_length=200, description="A run's id")]


async def _run(run_id: RunIdPath, caller: CallerDep, ops: OpsDep, request: RequestDep) -> RunRecord:
    return await ops.run_for(caller, run_id, request)


RunDep = Annotated[RunRecord, Depends(_run)]

_DESCRIPTIONS = {
    202: "The command is sent but not applied yet",
    401: "No credentials, or credentials that prove nothing",
    403: "The caller may not do this (the reason is in detail)",
    404: "No such thing, or one the caller may not see",
    409: "The run's state, or an earlier request, conflicts with this one",
    413: "The request body is too large",
    422: "The request is invalid (errors name each JSON path)",
    503: "The store, or the token issuer, cannot be reached",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem answers a route may give, for the OpenAPI document (401 and 503 always)."""
    return {
        code: {"model": _problem_model(), "description": _DESCRIPTIONS[code]}
        for code in sorted({401, 503, *codes})
    }


def _problem_model() -> Any:
    from cadenza.server.models import ProblemDetails

    return ProblemDetails


def bad_query(name: str, message: str) -> Problem:
    return Problem(422, f"$.query.{name}: {message}", errors=[{"path": f"$.query.{name}",
                                                             "message": message}])  # fmt: skip
