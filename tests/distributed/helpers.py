"""Small helpers for the distributed tests: waiting for a condition, reading the side effects
and opening gates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

#: Generous upper bound for anything to happen: only a hang fails on it, never a slow run.
PATIENCE = 120.0


async def until(
    check: Callable[[], Awaitable[T | bool | None]], what: str, timeout: float = PATIENCE
) -> T:
    """Poll ``check`` until it returns something truthy; fail (naming ``what``) after
    ``timeout`` seconds."""
    limit = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > limit:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def effects(dsn: str, step: str | None = None) -> list[tuple[Any, ...]]:
    """``(key, step, attempt, pid)`` of every side effect recorded, in order."""
    query = "SELECT key, step, attempt, pid FROM effects"
    params: tuple[Any, ...] = ()
    if step is not None:
        query, params = query + " WHERE step = %s", (step,)
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(query + " ORDER BY id", params).fetchall())


def open_gate(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO gates (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
