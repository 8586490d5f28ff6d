"""Calling one tool the way ``ToolNode`` needs: its injected arguments, its output as a
``ToolMessage`` (or the ``Command`` it returned), its errors as LangGraph words them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, InjectedToolArg
from pydantic import ValidationError

from cadenza.langgraph.types import Command

__all__ = (
    "InjectedState",
    "InjectedStore",
    "ToolInvocationError",
    "ToolRuntime",
    "ainvoke_tool",
    "handled_types",
    "injections",
    "invoke_tool",
    "msg_content_output",
)

INVALID_TOOL_NAME_ERROR_TEMPLATE = (
    "Error: {requested_tool} is not a valid tool, try one of [{available_tools}]."
)
TOOL_CALL_ERROR_TEMPLATE = "Error: {error}\n Please fix your mistakes."
TOOL_INVOCATION_ERROR_TEMPLATE = (
    "Error invoking tool '{tool_name}' with kwargs {tool_kwargs} with error:\n"
    " {error}\n"
    " Please fix the error and try again."
)
_BLOCK_TYPES = ("text", "image_url", "image", "json", "search_result", "custom_tool_call_output")


class InjectedState(InjectedToolArg):
    """Annotate a tool argument to receive the graph state (or one ``field`` of it)
    instead of a value from the model."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field


class InjectedStore(InjectedToolArg):
    """Annotate a tool argument to receive the graph's store."""


class ToolInvocationError(Exception):
    """A tool was called with arguments its schema refuses."""

    def __init__(
        self, tool_name: str, source: ValidationError, tool_kwargs: dict[str, Any], hidden: set[str]
    ) -> None:
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'Unknown error')}"
            for e in source.errors()
            if not (e.get("loc") and e["loc"][0] in hidden)
        ]
        self.message = TOOL_INVOCATION_ERROR_TEMPLATE.format(
            tool_name=tool_name, tool_kwargs=tool_kwargs, error="\n".join(parts)
        )
        self.tool_name = tool_name
        self.tool_kwargs = tool_kwargs
        self.source = source
        super().__init__(self.message)


def _default_handle_tool_errors(e: Exception) -> str:
    if isinstance(e, ToolInvocationError):
        return e.message
    raise e


def msg_content_output(output: Any) -> Any:
    if isinstance(output, str) or (
        isinstance(output, list)
        and all(isinstance(x, dict) and x.get("type") in _BLOCK_TYPES for x in output)
    ):
        return output
    try:
        return json.dumps(output, ensure_ascii=False)
    except Exception:
        return str(output)


def injections(tool: BaseTool) -> tuple[dict[str, str | None], str | None, str | None]:
    """(state args → field, store arg, runtime arg) a tool declares."""
    states: dict[str, str | None] = {}
    store = runtime = None
    fn = getattr(tool, "func", None) or getattr(tool, "coroutine", None)
    if fn is None:
        return states, store, runtime
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception:
        return states, store, runtime
    for name, hint in hints.items():
        if hint is ToolRuntime or get_origin(hint) is ToolRuntime:
            runtime = name
            continue
        for marker in getattr(hint, "__metadata__", ()):
            if isinstance(marker, InjectedState) or marker is InjectedState:
                states[name] = marker.field if isinstance(marker, InjectedState) else None
            elif isinstance(marker, InjectedStore) or marker is InjectedStore:
                store = name
    return states, store, runtime


def _raw_call(tool: BaseTool) -> bool:
    """Tools are called with their arguments only (not as a tool call) so that a returned
    ``Command`` reaches the node unchanged; tools that return an artifact are called as a
    tool call, which keeps the artifact."""
    return getattr(tool, "response_format", "content") != "content_and_artifact"


def _as_message(output: Any, call: dict[str, Any]) -> Any:
    if isinstance(output, (Command, ToolMessage)):
        return output
    if (
        isinstance(output, list)
        and output
        and all(isinstance(o, (Command, ToolMessage)) for o in output)
    ):
        return output
    return ToolMessage(
        content=msg_content_output(output), name=call["name"], tool_call_id=call["id"]
    )


def invoke_tool(tool: BaseTool, call: dict[str, Any], config: dict[str, Any]) -> Any:
    if not _raw_call(tool):
        return tool.invoke(call, config)
    return _as_message(tool.invoke(call["args"], config), call)


async def ainvoke_tool(tool: BaseTool, call: dict[str, Any], config: dict[str, Any]) -> Any:
    if not _raw_call(tool):
        return await tool.ainvoke(call, config)
    return _as_message(await tool.ainvoke(call["args"], config), call)


def handled_types(handler: Callable[..., str]) -> tuple[type[BaseException], ...]:
    try:
        hints = get_type_hints(handler)
    except Exception:
        return (Exception,)
    hints.pop("return", None)
    if not hints:
        return (Exception,)
    first = next(iter(hints.values()))
    args = get_args(first) or (first,)
    types = tuple(a for a in args if isinstance(a, type) and issubclass(a, BaseException))
    return types or (Exception,)


@dataclass
class ToolRuntime:
    """What a tool may ask for with a ``runtime: ToolRuntime`` argument."""

    state: Any
    tool_call_id: str | None
    config: dict[str, Any]
    context: Any = None
    store: Any = None
    stream_writer: Any = None
    tools: list[Any] = field(default_factory=list)
