"""Inbound callbacks: ``POST /v1/runs/{run_id}/callbacks/{step}`` resumes a WEBHOOK step that
waits for a callback (``callback=`` on the step).

A callback proves itself with a Standard Webhooks signature (``webhook-id``,
``webhook-timestamp`` within 5 minutes, ``webhook-signature``) made with one of the secrets in
the step's ``secret_env`` variable (several, space-separated, to rotate), not with an API key:
the sender is the service the step called. It is delivered to the run as the signal the step
waits for, exactly once per ``webhook-id``: the id is recorded (a primary key) before the
signal is sent, so a repeated delivery is answered without doing anything again, and one that
finds an earlier delivery abandoned by a dead process looks in the run's log before sending."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from cadenza.core.errors import CadenzaError
from cadenza.core.events import EventType
from cadenza.core.ids import RunId
from cadenza.graph.ir import StepKind
from cadenza.net.webhook_signing import WebhookVerificationError, verify
from cadenza.server.auth import AuthenticationError
from cadenza.server.deps import OpsDep, RequestDep, problems
from cadenza.server.models import CallbackReceipt
from cadenza.server.problems import Problem
from cadenza.server.tables import STALE_AFTER
from cadenza.steps.webhook import callback_signal

router = APIRouter(tags=["callbacks"])

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@router.post(
    "/v1/runs/{run_id}/callbacks/{step:path}",
    response_model=CallbackReceipt,
    responses=problems(404, 409, 413),
    openapi_extra={
        "security": [],
        "requestBody": {
            "description": "Anything the sender posts: JSON becomes the step's value, other "
            "text is kept as text",
            "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {}}},
        },
    },
)
async def callback(
    run_id: Annotated[str, Path(min_length=1, max_length=200)],
    step: Annotated[str, Path(min_length=1, max_length=1000)],
    request: Request,
    ops: OpsDep,
    info: RequestDep,
) -> dict[str, Any]:
    """Deliver a signed callback to the step waiting for it (once per ``webhook-id``)."""
    server = ops.server
    headers = {name: request.headers.get(name, "") for name in _HEADERS}
    missing = [name for name, value in headers.items() if not value]
    if missing:
        await _refused(ops, info, f"callback without {', '.join(missing)}")
    record = await server.engine.store.get_run(RunId(run_id))
    entry = server.catalog.get(record.workflow, record.version)
    try:
        definition = entry.ir.graph.find(step) if entry is not None else None
    except (KeyError, ValueError, IndexError):
        definition = None
    if (
        definition is None
        or definition.kind is not StepKind.WEBHOOK
        or not definition.options.get("callback")
    ):
        raise Problem(404, f"step {step!r} of run {run_id} takes no callbacks")
    secret_env = definition.options.get("secret_env")
    secrets = os.environ.get(str(secret_env), "").split() if secret_env else []
    if not secrets:
        raise Problem(
            409,
            f"step {step!r} cannot check callbacks: its secret_env ({secret_env or 'unset'}) "
            "holds no secret in this server's environment",
        )
    body = await request.body()
    try:
        webhook_id = verify(secrets, headers, body, now=server.clock())
    except (WebhookVerificationError, ValueError) as exc:
        await _refused(ops, info, f"callback to run {run_id} step {step}: {exc}")
    payload = _payload(body)
    tables = server.tables
    claim = await tables.claim_webhook(record.run_id, step, webhook_id, time.time())
    if not claim.mine:
        if claim.delivered is not None:
            return {"webhook_id": webhook_id, "duplicate": True}
        if claim.received >= time.time() - STALE_AFTER:
            raise Problem(409, f"callback {webhook_id!r} is being delivered; retry later")
        if await _in_log(ops, record.run_id, step, webhook_id):
            await tables.webhook_delivered(record.run_id, step, webhook_id, time.time())
            return {"webhook_id": webhook_id, "duplicate": True}
        if not await tables.take_over_webhook(
            record.run_id, step, webhook_id, claim.received, time.time()
        ):
            raise Problem(409, f"callback {webhook_id!r} is being delivered; retry later")
    try:
        await ops.deliver(record.run_id, callback_signal(step), payload, _actor(webhook_id))
    except CadenzaError:
        await tables.forget_webhook(record.run_id, step, webhook_id)
        raise
    await tables.webhook_delivered(record.run_id, step, webhook_id, time.time())
    return {"webhook_id": webhook_id, "duplicate": False}


def _actor(webhook_id: str) -> str:
    return f"webhook:{webhook_id}"


async def _refused(ops: Any, info: Any, reason: str) -> None:
    await ops.note(None, info, "callback_refused", reason)
    raise AuthenticationError(reason)


def _payload(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return body.decode("utf-8", errors="replace")


async def _in_log(ops: Any, run_id: RunId, step: str, webhook_id: str) -> bool:
    """Whether the run's log holds this callback's signal already (delivered by a process
    that died before noting it)."""
    name, actor = callback_signal(step), _actor(webhook_id)
    for event in await ops.server.engine.store.read_events(run_id):
        if (
            event.type is EventType.SIGNAL
            and event.data.get("name") == name
            and event.data.get("actor") == actor
        ):
            return True
    return False
