"""``/healthz`` (the process answers) and ``/readyz`` (the store answers, and its schema is the
one this Cadenza expects): the two routes that need no credentials, with the OpenAPI document
and its docs page."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cadenza.core.errors import StoreError
from cadenza.server.deps import ServerDep
from cadenza.server.models import Health, Readiness

router = APIRouter(tags=["health"])

#: How long /readyz waits for the store.
READY_TIMEOUT = 5.0


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready, with why"}},
)
async def readyz(server: ServerDep) -> Any:
    """Ready to serve: the store answers and its schema is current."""
    expected = server.expected_schema()
    body: dict[str, Any] = {
        "status": "ready",
        "store": server.dialect,
        "expected_schema_version": expected,
    }
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            version = await server.tables.schema_version()
    except (StoreError, TimeoutError) as exc:
        detail = str(exc) or f"the store did not answer within {READY_TIMEOUT:g} s"
        return JSONResponse({**body, "status": "unavailable", "detail": detail}, 503)
    body["schema_version"] = version
    if version != expected:
        detail = f"the store's schema is version {version}; this server expects {expected}"
        return JSONResponse({**body, "status": "unavailable", "detail": detail}, 503)
    return body
