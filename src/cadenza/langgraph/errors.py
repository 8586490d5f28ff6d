"""The exceptions a LangGraph graph raises, with LangGraph's names, bases and messages.

A program that catches ``langgraph.errors.X`` catches ``cadenza.langgraph.errors.X`` after
its imports change; the classes are the facade's own, so it needs no LangGraph install."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cadenza.langgraph.types import Command, Interrupt

__all__ = (
    "EmptyChannelError",
    "ErrorCode",
    "GraphDrained",
    "GraphRecursionError",
    "InvalidUpdateError",
    "GraphBubbleUp",
    "GraphInterrupt",
    "NodeCancelledError",
    "NodeError",
    "NodeInterrupt",
    "NodeTimeoutError",
    "ParentCommand",
    "EmptyInputError",
    "TaskNotFound",
    "UnknownInterruptError",
    "is_invalid_resume",
)


class ErrorCode(Enum):
    GRAPH_RECURSION_LIMIT = "GRAPH_RECURSION_LIMIT"
    INVALID_CONCURRENT_GRAPH_UPDATE = "INVALID_CONCURRENT_GRAPH_UPDATE"
    INVALID_GRAPH_NODE_RETURN_VALUE = "INVALID_GRAPH_NODE_RETURN_VALUE"
    MULTIPLE_SUBGRAPHS = "MULTIPLE_SUBGRAPHS"
    INVALID_CHAT_HISTORY = "INVALID_CHAT_HISTORY"


def create_error_message(*, message: str, error_code: ErrorCode) -> str:
    """The message followed by the troubleshooting link LangGraph appends."""
    return (
        f"{message}\n"
        "For troubleshooting, visit: https://docs.langchain.com/oss/python/langgraph/"
        f"errors/{error_code.value}"
    )


class EmptyChannelError(Exception):
    """A channel was read before it held a value."""


class GraphBubbleUp(Exception):
    """Base of the exceptions that travel up through nodes instead of failing them."""


class GraphDrained(GraphBubbleUp):
    """The run stopped at a superstep boundary because a drain was requested."""

    def __init__(self, reason: str = "shutdown") -> None:
        super().__init__(reason)
        self.reason = reason


class GraphRecursionError(RecursionError):
    """The graph ran more supersteps than ``recursion_limit`` allows."""


class InvalidUpdateError(Exception):
    """A node returned something the state cannot take (a bad value, or two values for a
    last-value key in one step)."""


class GraphInterrupt(GraphBubbleUp):
    """A node paused the run; carries the interrupts. Never surfaced to the caller."""

    def __init__(self, interrupts: Sequence[Interrupt] = ()) -> None:
        super().__init__(interrupts)


class NodeInterrupt(GraphInterrupt):
    """Deprecated: raise from a node to pause the run with ``value``; use ``interrupt``."""

    def __init__(self, value: Any, id: str | None = None) -> None:
        from cadenza.langgraph.types import Interrupt

        if id is None:
            super().__init__([Interrupt(value=value)])
        else:
            super().__init__([Interrupt(value=value, id=id)])


class ParentCommand(GraphBubbleUp):
    """Carries a ``Command(graph=Command.PARENT)`` up to the graph that runs the subgraph."""

    args: tuple[Command]

    def __init__(self, command: Command) -> None:
        super().__init__(command)


class EmptyInputError(Exception):
    """The graph was invoked with no input and has nothing to resume."""


class TaskNotFound(Exception):
    """A task named in a distributed run does not exist."""


class UnknownInterruptError(Exception):
    """A resume names interrupts that are not pending, or is ambiguous."""

    def __init__(
        self,
        message: str,
        *,
        reason: Literal["not_pending", "empty_map", "ambiguous"],
        interrupt_ids: Sequence[str] = (),
        pending_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.interrupt_ids = tuple(interrupt_ids)
        self.pending_ids = tuple(pending_ids)


@dataclass(frozen=True, slots=True)
class NodeError:
    """The failure an error-handler node is called about."""

    node: str
    error: BaseException


class NodeCancelledError(Exception):
    """A node raised ``asyncio.CancelledError`` from its own body."""

    def __init__(self, node: str, message: str | None = None) -> None:
        super().__init__(message or f"Node '{node}' was cancelled")
        self.node = node


class NodeTimeoutError(Exception):
    """A node ran past its timeout."""

    def __init__(self, node: str, timeout: float, elapsed: float = 0.0) -> None:
        super().__init__(f"Node '{node}' timed out after {timeout}s")
        self.node = node
        self.timeout = timeout
        self.elapsed = elapsed


_INVALID_RESUME = "_langgraph_invalid_resume"


def mark_invalid_resume(error: BaseException) -> None:
    setattr(error, _INVALID_RESUME, True)


def is_invalid_resume(error: BaseException) -> bool:
    """Whether ``error`` is a resume value that failed its interrupt's ``response_schema``."""
    return getattr(error, _INVALID_RESUME, False) is True
