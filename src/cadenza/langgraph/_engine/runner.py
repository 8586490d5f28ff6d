"""Running one task to its end: the node call, its writes, retries by its ``RetryPolicy``,
``Command``s a subgraph sends to this graph. The drivers (``drive.py``) decide when tasks
run and record how each ended."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._context import CURRENT
from cadenza.langgraph._engine.messages import node_run
from cadenza.langgraph.errors import (
    GraphBubbleUp,
    NodeCancelledError,
    NodeTimeoutError,
    ParentCommand,
)
from cadenza.langgraph.types import Command, RetryPolicy

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("arun_task", "run_task")

logger = logging.getLogger("cadenza.langgraph")


def _matching(policies: Sequence[RetryPolicy], exc: Exception) -> RetryPolicy | None:
    for policy in policies:
        retry_on = policy.retry_on
        if isinstance(retry_on, Sequence):
            if isinstance(exc, tuple(retry_on)):
                return policy
        elif isinstance(retry_on, type) and issubclass(retry_on, Exception):
            if isinstance(exc, retry_on):
                return policy
        elif callable(retry_on):
            if retry_on(exc):
                return policy
        else:
            raise TypeError(
                "retry_on must be an Exception class, a list or tuple of Exception classes, "
                "or a callable"
            )
    return None


def _backoff(policy: RetryPolicy, attempts: int) -> float:
    interval = min(
        policy.max_interval, policy.initial_interval * policy.backoff_factor ** (attempts - 1)
    )
    return interval + random.uniform(0, 1) if policy.jitter else interval


def _parent_command(task: Task, exc: ParentCommand) -> bool:
    """Handle a ``Command`` a subgraph sent to this graph; ``False`` to pass it up."""
    cmd = exc.args[0]
    if cmd.graph in (task.ns, _strip_ids(task.ns), task.name):
        task.writes.clear()
        task.node.produce(task, Command(update=cmd.update, goto=cmd.goto, resume=cmd.resume))
        return True
    if cmd.graph == Command.PARENT:
        exc.args = (
            Command(graph=_parent_ns(task.ns), update=cmd.update, goto=cmd.goto, resume=cmd.resume),
        )
    return False


def _strip_ids(ns: str) -> str:
    return "|".join(part.split(":")[0] for part in ns.split("|") if not part.isdigit())


def _parent_ns(ns: str) -> str:
    """The namespace of the graph that runs the graph a task with namespace ``ns`` is in."""
    parts = ns.split("|")
    while parts and parts[-1].isdigit():
        parts.pop()
    if parts:
        parts.pop()
    while parts and parts[-1].isdigit():
        parts.pop()
    return "|".join(parts)


def _retry(task: Task, exc: Exception, attempts: int) -> float | None:
    """Seconds to wait before another attempt, or ``None`` to give up."""
    policies = task.node.retry or task.loop.graph.retry_policy
    exc.add_note(f"During task with name '{task.name}' and id '{task.id}'")
    if not policies:
        return None
    policy = _matching(policies, exc)
    if policy is None or attempts >= policy.max_attempts:
        return None
    delay = _backoff(policy, attempts)
    logger.info(
        "Retrying task %s after %.2f seconds (attempt %d) after %s %s",
        task.name,
        delay,
        attempts,
        type(exc).__name__,
        exc,
    )
    return delay


def run_task(task: Task) -> None:
    """Run one task to its end (with retries); raises what ended it."""
    node = task.node
    caller = node.caller
    attempts = 0
    token = CURRENT.set(task)
    try:
        while True:
            task.writes.clear()
            try:
                if task.loop.messages is not None and caller is not None:
                    with node_run(task) as done:
                        output = caller.call(task.input, task)
                        node.produce(task, output)
                        done(output)
                    return
                output = caller.call(task.input, task) if caller is not None else task.input
                node.produce(task, output)
                return
            except ParentCommand as exc:
                if _parent_command(task, exc):
                    return
                raise
            except GraphBubbleUp:
                raise
            except Exception as exc:
                attempts += 1
                delay = _retry(task, exc, attempts)
                if delay is None:
                    raise
                time.sleep(delay)
                task.resuming = True
                task.interrupts_asked = 0
    finally:
        CURRENT.reset(token)


async def arun_task(task: Task) -> None:
    """``run_task`` on the event loop, with the node's timeout when it has one."""
    node = task.node
    caller = node.caller
    timeout = node.timeout.run_timeout if node.timeout is not None else None
    attempts = 0
    token = CURRENT.set(task)
    try:
        while True:
            task.writes.clear()
            try:
                if task.loop.messages is not None and caller is not None:
                    with node_run(task) as done:
                        output = await _acall(task, timeout)
                        await node.aproduce(task, output)
                        done(output)
                    return
                output = await _acall(task, timeout) if caller is not None else task.input
                await node.aproduce(task, output)
                return
            except ParentCommand as exc:
                if _parent_command(task, exc):
                    return
                raise
            except GraphBubbleUp:
                raise
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                raise NodeCancelledError(task.name) from exc
            except Exception as exc:
                attempts += 1
                delay = _retry(task, exc, attempts)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                task.resuming = True
                task.interrupts_asked = 0
    finally:
        CURRENT.reset(token)


async def _acall(task: Task, timeout: float | None) -> Any:
    caller = task.node.caller
    assert caller is not None
    if timeout is None:
        return await caller.acall(task.input, task)
    try:
        return await asyncio.wait_for(caller.acall(task.input, task), timeout)
    except TimeoutError as exc:
        raise NodeTimeoutError(task.name, timeout, timeout) from exc
