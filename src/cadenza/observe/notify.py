"""Telling people: approval requests, escalations and decisions are posted to the workflow's
``notification_channels`` (URLs of Slack-style incoming webhooks: a JSON body with ``text``).

Posting never delays or fails a run: each message is sent in the background, and a channel
that is down is logged and skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import structlog

_log = structlog.get_logger("cadenza.notify")
_pending: set[asyncio.Task[None]] = set()


def notify(channels: Sequence[str], text: str, **fields: Any) -> None:
    """Post ``{"text": text, "cadenza": fields}`` to every channel, in the background."""
    if not channels:
        return
    body = {"text": text, "cadenza": fields}
    for url in channels:
        task = asyncio.get_running_loop().create_task(_post(url, body))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


async def drain() -> None:
    """Wait for the messages still being sent (engine shutdown, tests)."""
    if _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


async def _post(url: str, body: dict[str, Any]) -> None:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, json=body)
        if response.status_code >= 300:
            _log.warning("notification_refused", url=url, status=response.status_code)
    except httpx.HTTPError as exc:
        _log.warning("notification_failed", url=url, error=str(exc) or type(exc).__name__)
