"""What a node can ask for besides its state and config: ``runtime: Runtime[Context]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ("ExecutionInfo", "Runtime", "get_runtime")

ContextT = TypeVar("ContextT")


def _no_op(_chunk: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """Where the running node is: its checkpoint, namespace, task and thread."""

    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    task_id: str | None = None
    thread_id: str | None = None
    node_attempt: int = 1


@dataclass(frozen=True, slots=True)
class Runtime(Generic[ContextT]):
    """Run-scoped things a node may use: the ``context`` passed to ``invoke``, the store,
    the ``custom`` stream writer and where it runs."""

    context: ContextT = None  # type: ignore[assignment]
    store: Any = None
    stream_writer: Any = field(default=_no_op)
    previous: Any = None
    execution_info: ExecutionInfo | None = None


def get_runtime(context_schema: Any = None) -> Runtime[Any]:
    """The ``Runtime`` of the running node (raises outside a node)."""
    from cadenza.langgraph._context import current_task

    task = current_task("get_runtime")
    return task.loop.services.runtime(task)
