"""A workflow for crash tests of retries and rollback, driven by environment variables:

- ``SAGA_KILL_AFTER=TYPE@PATH``: SIGKILL right after the store committed that event;
- ``SAGA_KILL_IN=PATH``: SIGKILL inside that handler or compensation, the first time it runs.

Handlers and compensations append their idempotency key to ``$SAGA_EFFECTS``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any, TypedDict

from cadenza import Engine, Event, ExecutionContext, RetryPolicy, Workflow


class State(TypedDict, total=False):
    fail_ship: bool
    shipped: bool


def _effect(ctx: ExecutionContext) -> None:
    path = os.environ["SAGA_EFFECTS"]
    with open(path, "a") as f:
        f.write(ctx.idempotency_key.split(":", 1)[1] + "\n")
    if os.environ.get("SAGA_KILL_IN") == ctx.path:
        with open(path) as f:
            if sum(line.strip() == ctx.path for line in f) == 1:
                os.kill(os.getpid(), signal.SIGKILL)


def reserve(state: State, ctx: ExecutionContext) -> None:
    _effect(ctx)


def unreserve(state: State, ctx: ExecutionContext) -> None:
    _effect(ctx)


def charge(state: State, ctx: ExecutionContext) -> None:
    _effect(ctx)


def refund(state: State, ctx: ExecutionContext) -> None:
    _effect(ctx)


def flaky(state: State, ctx: ExecutionContext) -> None:
    _effect(ctx)
    if ctx.attempt < 3:
        raise ConnectionError(f"gateway timeout (attempt {ctx.attempt})")


def ship(state: State, ctx: ExecutionContext) -> State:
    _effect(ctx)
    if state.get("fail_ship"):
        raise ValueError("address rejected by the carrier")
    return {"shipped": True}


workflow = Workflow("sagacrash", state=State)
workflow.task(reserve, compensate=unreserve)
workflow.task(charge, compensate=refund)
workflow.task(flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.8, backoff=1, jitter=0))
workflow.task(ship)


class KillAfter:
    def __init__(self, spec: str) -> None:
        self.type, _, self.path = spec.partition("@")

    def on_event(self, event: Event, **future: Any) -> None:
        if event.type == self.type and event.path == self.path:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(db: str, fail_ship: bool) -> None:
    from cadenza import SQLiteStore

    spec = os.environ.get("SAGA_KILL_AFTER")
    async with Engine(SQLiteStore(db), observers=[KillAfter(spec)] if spec else []) as engine:
        target = f"{os.path.abspath(__file__)}:workflow"
        await engine.run(workflow, {"fail_ship": fail_ship}, target=target)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] == "fail"))
