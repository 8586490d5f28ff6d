"""Calling user code: handlers, routers and conditions, sync or async, with or without a
context, under the run's concurrency limit and an optional timeout."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pydantic_core

from cadenza.core.context import ExecutionContext
from cadenza.core.errors import CadenzaError, ExpressionError
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import Condition, Handler
from cadenza.observe.logging import step_logger
from cadenza.resilience.limits import Bulkhead
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


class BadStepResult(CadenzaError):
    """A handler returned something that is not a valid state update (never retried)."""


def context(
    run: RunExecution, scope: Scope, path: str, name: str, attempt: int
) -> ExecutionContext:
    return ExecutionContext(
        run_id=run.run_id,
        workflow=run.ir.name,
        step=name,
        path=path,
        attempt=attempt,
        config=run.ir.config,
        item=scope.item,
        index=scope.index,
        make_logger=step_logger,
    )


async def call_handler(
    run: RunExecution,
    handler: Handler,
    state: dict[str, Any],
    ctx: ExecutionContext,
    timeout: float | None,
    bulkhead: Bulkhead | None = None,
) -> Any:
    if bulkhead is not None:
        # The shared slot first: waiting for it must not hold one of the run's own slots.
        async with run.bulkheads.semaphore(bulkhead):
            return await call_handler(run, handler, state, ctx, timeout)
    args = (state, ctx) if handler.wants_context else (state,)
    async with run.limit:
        if handler.is_async:
            coro = handler.fn(*args)
            return await (asyncio.wait_for(coro, timeout) if timeout else coro)
        if handler.inline:
            return handler.fn(*args)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(run.thread_pool, functools.partial(handler.fn, *args))
        # On timeout the thread cannot be stopped: it is abandoned and its late result ignored.
        return await (asyncio.wait_for(future, timeout) if timeout else future)


def check_update(run: RunExecution, result: Any) -> dict[str, Any] | None:
    """Validate a handler's return value as a state update."""
    if result is None:
        return None
    if not isinstance(result, Mapping):
        raise BadStepResult(
            f"returned {type(result).__name__}; a step returns a dict of state updates or None"
        )
    unknown = run.ir.schema.check_keys(result)
    if unknown:
        raise BadStepResult(
            f"wrote {', '.join(map(repr, unknown))}, which the state schema "
            f"{run.ir.schema.name} lacks (fields: {', '.join(run.ir.schema.fields)})"
        )
    update = dict(result)
    try:
        pydantic_core.to_json(update)
    except pydantic_core.PydanticSerializationError as exc:
        raise BadStepResult(f"returned a value that cannot be stored as JSON: {exc}") from None
    return update


async def evaluate(
    cond: Condition, state: dict[str, Any], ctx: ExecutionContext | None = None
) -> Any:
    """Evaluate a condition: an expression, or a predicate ``fn(state[, ctx])``."""
    if isinstance(cond, Expression):
        return await cond.atest(state)
    params = len(inspect.signature(cond).parameters)
    result = cond(state, ctx) if params >= 2 else cond(dict(state))
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


__all__ = [
    "BadStepResult",
    "ExpressionError",
    "call_handler",
    "check_update",
    "context",
    "evaluate",
]
