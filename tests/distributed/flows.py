"""Workflows the distributed tests run in ``cadenza worker`` processes.

Every step records its side effect, in its own transaction, in the ``effects`` table of the
database named by ``$CADENZA_TEST_DSN`` (the one the workers share): its idempotency key, path,
attempt and the worker's pid; and returns ``{"by": {path: pid}}``, so that the log says which
worker completed it. A *gate* is a row in ``gates`` that a step waits for (the test opens it)."""

from __future__ import annotations

import asyncio
import operator
import os
import time
from typing import Annotated, Any, TypedDict

from psycopg_pool import AsyncConnectionPool

from cadenza import ExecutionContext, Workflow


class State(TypedDict, total=False):
    by: Annotated[dict[str, int], operator.or_]
    payload: Any


_pool: AsyncConnectionPool | None = None
_opening = asyncio.Lock()


async def _connections() -> AsyncConnectionPool:
    global _pool
    async with _opening:
        if _pool is None:
            pool = AsyncConnectionPool(
                os.environ["CADENZA_TEST_DSN"], min_size=1, max_size=4, open=False
            )
            await pool.open(wait=True)
            _pool = pool
    return _pool


async def effect(ctx: ExecutionContext) -> State:
    """Record this attempt's side effect (committed before the step returns)."""
    pool = await _connections()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO effects (key, step, attempt, pid, at) VALUES (%s, %s, %s, %s, %s)",
            (ctx.idempotency_key, ctx.path, ctx.attempt, os.getpid(), time.time()),
        )
    return {"by": {ctx.path: os.getpid()}}


async def gate(name: str) -> None:
    """Wait until the test opens gate ``name``."""
    pool = await _connections()
    while True:
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT 1 FROM gates WHERE name = %s", (name,))
            ).fetchone()
        if row is not None:
            return
        await asyncio.sleep(0.02)


def step(tag: str, *, gate_name: str | None = None, sleep: float = 0.0) -> Any:
    async def handler(state: State, ctx: ExecutionContext) -> State:
        update = await effect(ctx)
        if gate_name is not None:
            await gate(gate_name)
        if sleep:
            await asyncio.sleep(sleep)
        return update

    handler.__name__ = handler.__qualname__ = tag
    return handler


# -- the chaos test: 5 steps with a parallel branch ----------------------------------------------

chaos = Workflow("chaos", state=State)
chaos.task(step("a"))
chaos.parallel("fan", [step("b1"), step("b2")])
chaos.task(step("c"))
chaos.task(step("d"))

CHAOS_STEPS = ("a", "fan[0]/b1", "fan[1]/b2", "c", "d")

# -- fencing: the middle step waits for a gate ---------------------------------------------------

fenced = Workflow("fenced", state=State)
fenced.task(step("first"))
fenced.task(step("slow", gate_name="fenced"))
fenced.task(step("last"))

# -- graceful shutdown: a step that takes a while ------------------------------------------------

steady = Workflow("steady", state=State)
steady.task(step("first"))
steady.task(step("slow", gate_name="steady"))
steady.task(step("last"))

# -- timers: a durable wait, then an approval that times out (and is approved by that) -----------

timers = Workflow("timers", state=State)
timers.task(step("first"))
timers.wait("nap", seconds=float(os.environ.get("CADENZA_TEST_NAP", "1.0")))
timers.approval("review", approvers=["nobody"], timeout=0.5, on_timeout="approve")
timers.task(step("last"))

# -- commands: a step held at a gate, then a wait for a signal -----------------------------------

signalled = Workflow("signalled", state=State)
signalled.task(step("gated", gate_name="signalled"))
signalled.wait("hear", signal="proceed", output="payload")
signalled.task(step("last"))

forever = Workflow("forever", state=State)
forever.task(step("stuck", gate_name="never"))
forever.task(step("last"))

# -- outages: steps that touch only the file system (the database restarts meanwhile) ------------


def marked(tag: str, pause: float = 0.02) -> Any:
    """A step that records each of its executions (a line in ``$CADENZA_TEST_MARKS``, one
    ``O_APPEND`` write) and does not touch the database itself."""

    async def handler(state: State, ctx: ExecutionContext) -> State:
        line = f"{ctx.idempotency_key} {ctx.attempt} {os.getpid()}\n".encode()
        fd = os.open(os.environ["CADENZA_TEST_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        await asyncio.sleep(pause)
        return {"by": {ctx.path: os.getpid()}}

    handler.__name__ = handler.__qualname__ = tag
    return handler


OUTAGE_STEPS = tuple(f"o{i}" for i in range(6))
outage = Workflow("outage", state=State)
for _tag in OUTAGE_STEPS:
    outage.task(marked(_tag))
