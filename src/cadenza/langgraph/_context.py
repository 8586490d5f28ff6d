"""The task a node is running in, for ``get_config``, ``get_stream_writer`` and ``interrupt``.

A context variable, so it follows the node into threads (``asyncio.to_thread`` copies the
context) and stays apart between concurrent async tasks."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

CURRENT: ContextVar[Task | None] = ContextVar("cadenza_langgraph_task", default=None)


def current_task(what: str) -> Task:
    """The running task; ``what`` names the caller in the error raised outside a node."""
    task = CURRENT.get()
    if task is None:
        raise RuntimeError(f"Called {what} outside of a runnable context")
    return task


def maybe_task() -> Task | None:
    return CURRENT.get()
