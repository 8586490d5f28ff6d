"""The FastAPI application of ``cadenza serve``: the native API under ``/v1``, health checks,
the OpenAPI 3.1 document (``/openapi.json``) and its docs page (``/docs``).

``create_app(server)`` serves a :class:`~cadenza.server.service.Server`; the app opens it on
start-up and closes it on shutdown unless it was opened already (tests open it themselves
and drive the app through ``httpx.ASGITransport``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cadenza.server import problems
from cadenza.server.commands import Operations
from cadenza.server.problems import Problem
from cadenza.server.routes import approvals, audit, callbacks, health, runs, streams, workflows
from cadenza.server.service import Server

__all__ = ["create_app"]

API_VERSION = "1"
_DESCRIPTION = """Cadenza's native API: workflows, runs, approvals, audit and live events.

Every route but `/healthz`, `/readyz`, `/openapi.json` and `/docs` needs
`Authorization: Bearer <credential>`: an API key (`cadenza keys create`) or an access token
of a configured OIDC issuer. Callbacks to webhook steps are authenticated by their Standard
Webhooks signature instead. Errors are RFC 9457 problem details
(`application/problem+json`)."""


def create_app(server: Server) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened_here = not server._opened
        if opened_here:
            await server.open()
        try:
            yield
        finally:
            if opened_here:
                await server.close()

    app = FastAPI(
        title="Cadenza",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=server.config.max_body_bytes)
    app.state.server = server
    app.state.ops = Operations(server)
    problems.install(app)
    for module in (health, workflows, runs, approvals, streams, audit, callbacks):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413 problem: at once when the
    ``Content-Length`` says so, else as soon as more has arrived (nothing past the limit is
    kept)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            too_large = f"the request body has {int(declared)} bytes; at most {self.limit}"
            await Problem(413, too_large).response(scope.get("path", ""))(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, f"the request body is over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with error answers as ``application/problem+json`` (which is what
    they are sent as)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                problem = code == "202" or (code.isdigit() and int(code) >= 400)
                if problem and content:  # documented as the route's type (JSON, SSE, CSV)
                    answer["content"] = {"application/problem+json": next(iter(content.values()))}
    app.openapi_schema = schema
    return schema
