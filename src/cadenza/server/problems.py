"""Every error the API returns is an RFC 9457 problem: ``application/problem+json`` with a
``type``, a ``title`` for its kind, the HTTP ``status`` and a one-line ``detail`` that says
what was wrong (text from users, steps and stores in it as written, never interpreted).
Validation problems add ``errors``: each with the JSON path of what was wrong.

Errors map to statuses as they map to the CLI's exit codes: bad input 422, unknown ids 404,
refusals 403, conflicts with a run's state 409; an unreachable store 503."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cadenza.core.errors import (
    CadenzaError,
    ConflictError,
    IllegalTransition,
    InputError,
    RunNotFound,
    StoreError,
    StoreUnavailable,
)
from cadenza.identity import ApprovalDenied
from cadenza.server.access import Refused
from cadenza.server.auth import AuthenticationError, IssuerUnavailable

__all__ = ["MEDIA_TYPE", "Problem", "install", "json_path"]

MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://cadenza.dev/problems/"
_TITLES = {
    202: "Accepted, not applied yet",
    400: "Bad request",
    401: "Not authenticated",
    403: "Refused",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    503: "Unavailable",
}
_SLUGS = {
    401: "unauthenticated",
    403: "refused",
    404: "not-found",
    409: "conflict",
    413: "too-large",
    422: "invalid",
    503: "unavailable",
}
_MAX_DETAIL = 2000


class Problem(Exception):
    """An error answer: raise it from a route (or from code a route calls)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, instance: str = "") -> JSONResponse:
        body: dict[str, Any] = {
            "type": _TYPE_BASE + _SLUGS.get(self.status, str(self.status)),
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": _one_line(self.detail),
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [dict(e) for e in self.errors[:50]]
        body.update(self.extra)
        return JSONResponse(body, self.status, headers=self.headers, media_type=MEDIA_TYPE)


def _one_line(text: str) -> str:
    line = " ".join(str(text).split("\n"))
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


def from_error(exc: BaseException) -> Problem:
    """The problem a Cadenza error stands for."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, IssuerUnavailable):
        return Problem(503, str(exc), headers={"Retry-After": "30"})
    if isinstance(exc, AuthenticationError):
        return Problem(401, str(exc), headers={"WWW-Authenticate": _challenge(str(exc))})
    if isinstance(exc, Refused | ApprovalDenied):
        return Problem(403, str(exc))
    if isinstance(exc, RunNotFound):
        return Problem(404, str(exc))
    if isinstance(exc, InputError):
        return Problem(422, str(exc), errors=[{"path": "$.input", "message": str(exc)}])
    if isinstance(exc, StoreUnavailable):
        return Problem(503, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, IllegalTransition | ConflictError):
        return Problem(409, str(exc))
    if isinstance(exc, StoreError):
        return Problem(503, str(exc))
    if isinstance(exc, CadenzaError):
        return Problem(409, str(exc))
    return Problem(500, "internal error; the server's log has the details")


def _challenge(reason: str) -> str:
    quoted = reason.replace("\\", "\\\\").replace('"', "'")[:200]
    return f'Bearer error="invalid_token", error_description="{quoted}"'


def json_path(location: Sequence[Any]) -> str:
    """``$.body.input.amount`` / ``$.query.limit`` / ``$.body.items[2]`` from a pydantic
    location."""
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _validation(exc: RequestValidationError) -> Problem:
    errors = [
        {"path": json_path(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"path": "$", "message": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Problem(422, f"{first['path']}: {first['message']}{more}", errors=errors)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem."""

    async def problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation(exc).response(request.url.path)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body is not JSON this server can read (malformed, or nested "
            detail += "too deeply)"
        return Problem(exc.status_code, detail, headers=exc.headers).response(request.url.path)

    async def cadenza(request: Request, exc: Exception) -> JSONResponse:
        return from_error(exc).response(request.url.path)

    async def too_deep(request: Request, exc: Exception) -> JSONResponse:
        return Problem(422, "the request body is nested too deeply").response(request.url.path)

    app.add_exception_handler(Problem, problem)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(CadenzaError, cadenza)
    app.add_exception_handler(RecursionError, too_deep)
