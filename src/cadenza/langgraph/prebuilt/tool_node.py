"""``ToolNode`` and ``tools_condition``: run the tool calls of the last AI message.

Tools are langchain-core tools (plain functions are wrapped with ``@tool``). A tool's return
value becomes a ``ToolMessage``; a tool may return a ``Command`` to update state or route."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage, convert_to_messages
from langchain_core.tools import BaseTool
from langchain_core.tools import tool as create_tool
from pydantic import ValidationError

from cadenza.langgraph.errors import GraphBubbleUp, is_invalid_resume
from cadenza.langgraph.prebuilt._tool_call import (
    INVALID_TOOL_NAME_ERROR_TEMPLATE,
    TOOL_CALL_ERROR_TEMPLATE,
    InjectedState,
    InjectedStore,
    ToolInvocationError,
    ToolRuntime,
    _default_handle_tool_errors,
    ainvoke_tool,
    handled_types,
    injections,
    invoke_tool,
    msg_content_output,
)
from cadenza.langgraph.types import Command, Send

__all__ = (
    "InjectedState",
    "InjectedStore",
    "ToolNode",
    "ToolRuntime",
    "tools_condition",
)

InputType = Literal["list", "dict", "tool_calls"]


class ToolNode:
    """A node that runs every tool call of the last ``AIMessage`` and returns the
    ``ToolMessage``s (``{"messages": [...]}`` for a dict state, a list for a list)."""

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        name: str = "tools",
        tags: list[str] | None = None,
        handle_tool_errors: Any = _default_handle_tool_errors,
        messages_key: str = "messages",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("wrap_tool_call") or kwargs.get("awrap_tool_call"):
            raise ValueError("ToolNode(wrap_tool_call=...) is not supported by the Cadenza facade")
        self.name = name
        self.tags = tags
        self._handle = handle_tool_errors
        self._messages_key = messages_key
        self.tools_by_name: dict[str, BaseTool] = {}
        self._injected: dict[str, tuple[dict[str, str | None], str | None, str | None]] = {}
        for item in tools:
            tool = item if isinstance(item, BaseTool) else create_tool(item)
            self.tools_by_name[tool.name] = tool
            self._injected[tool.name] = injections(tool)

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or self.name

    # ------------------------------------------------------------------ running

    def invoke(self, input: Any, config: dict[str, Any] | None = None, **_: Any) -> Any:
        calls, kind = self._parse(input)
        outputs = [self._run_one(call, kind, input, config or {}) for call in calls]
        return self._combine(outputs, kind)

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None, **_: Any) -> Any:
        calls, kind = self._parse(input)
        outputs = await asyncio.gather(
            *(self._arun_one(call, kind, input, config or {}) for call in calls)
        )
        return self._combine(list(outputs), kind)

    def _parse(self, input: Any) -> tuple[list[dict[str, Any]], InputType]:
        if isinstance(input, list):
            if isinstance(input[-1], dict) and input[-1].get("type") == "tool_call":
                return list(input), "tool_calls"
            messages, kind = input, "list"
        elif isinstance(input, dict) and input.get("__type") == "tool_call_with_context":
            return [input["tool_call"]], "tool_calls"
        elif (isinstance(input, dict) and (messages := input.get(self._messages_key, []))) or (
            messages := getattr(input, self._messages_key, [])
        ):
            kind = "dict"
        else:
            raise ValueError("No message found in input")
        try:
            last = next(m for m in reversed(messages) if isinstance(m, AIMessage))
        except StopIteration:
            raise ValueError("No AIMessage found in input") from None
        return list(last.tool_calls), kind

    def _state(self, input: Any) -> Any:
        if isinstance(input, dict) and input.get("__type") == "tool_call_with_context":
            return input.get("state")
        return input

    def _prepare(self, call: dict[str, Any], input: Any, config: dict[str, Any]) -> dict[str, Any]:
        states, store, runtime = self._injected[call["name"]]
        args = dict(call["args"])
        state = self._state(input)
        for arg, key in states.items():
            if key is None:
                args[arg] = state
            else:
                args[arg] = state[key] if isinstance(state, dict) else getattr(state, key)
        if store is not None:
            from cadenza.langgraph.config import get_store

            args[store] = get_store()
        if runtime is not None:
            args[runtime] = ToolRuntime(state, call.get("id"), config)
        return {**call, "args": args, "type": "tool_call"}

    def _invalid(self, call: dict[str, Any]) -> ToolMessage | None:
        if call["name"] in self.tools_by_name:
            return None
        content = INVALID_TOOL_NAME_ERROR_TEMPLATE.format(
            requested_tool=call["name"], available_tools=", ".join(self.tools_by_name)
        )
        return ToolMessage(content, name=call["name"], tool_call_id=call["id"], status="error")

    def _run_one(
        self, call: dict[str, Any], kind: InputType, input: Any, config: dict[str, Any]
    ) -> Any:
        if (invalid := self._invalid(call)) is not None:
            return invalid
        tool = self.tools_by_name[call["name"]]
        try:
            try:
                response = invoke_tool(tool, self._prepare(call, input, config), config)
            except ValidationError as exc:
                if is_invalid_resume(exc):
                    raise
                hidden = set(self._injected[call["name"]][0])
                raise ToolInvocationError(call["name"], exc, call["args"], hidden) from exc
            return self._normalize(response, call, kind)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return self._on_error(exc, call)

    async def _arun_one(
        self, call: dict[str, Any], kind: InputType, input: Any, config: dict[str, Any]
    ) -> Any:
        if (invalid := self._invalid(call)) is not None:
            return invalid
        tool = self.tools_by_name[call["name"]]
        try:
            try:
                response = await ainvoke_tool(tool, self._prepare(call, input, config), config)
            except ValidationError as exc:
                if is_invalid_resume(exc):
                    raise
                hidden = set(self._injected[call["name"]][0])
                raise ToolInvocationError(call["name"], exc, call["args"], hidden) from exc
            return self._normalize(response, call, kind)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            return self._on_error(exc, call)

    def _on_error(self, exc: Exception, call: dict[str, Any]) -> ToolMessage:
        if is_invalid_resume(exc):
            raise exc
        flag = self._handle
        if isinstance(flag, type) and issubclass(flag, Exception):
            handled: tuple[type[BaseException], ...] = (flag,)
        elif isinstance(flag, tuple):
            handled = flag
        elif callable(flag) and not isinstance(flag, type):
            handled = handled_types(flag)
        else:
            handled = (Exception,)
        if not flag or not isinstance(exc, handled):
            raise exc
        if isinstance(flag, (bool, tuple, type)):
            content = TOOL_CALL_ERROR_TEMPLATE.format(error=repr(exc))
        elif isinstance(flag, str):
            content = flag
        else:
            content = flag(exc)
        return ToolMessage(
            content=content, name=call["name"], tool_call_id=call["id"], status="error"
        )

    def _normalize(self, response: Any, call: dict[str, Any], kind: InputType) -> Any:
        if isinstance(response, Command):
            return self._check_command(response, call, kind)
        if isinstance(response, ToolMessage):
            response.content = msg_content_output(response.content)
            return response
        if isinstance(response, list) and all(
            isinstance(r, (Command, ToolMessage)) for r in response
        ):
            return [self._normalize(r, call, kind) for r in response]
        raise TypeError(f"Tool {call['name']} returned unexpected type: {type(response)}")

    def _check_command(self, command: Command, call: dict[str, Any], kind: InputType) -> Command:
        if isinstance(command.update, dict):
            if kind not in ("dict", "tool_calls"):
                raise ValueError(
                    "Tools can provide a dict in Command.update only when using dict with "
                    f"'{self._messages_key}' key as ToolNode input, got: {command.update} for "
                    f"tool '{call['name']}'"
                )
            command = deepcopy(command)
            messages = command.update.get(self._messages_key, [])
        elif isinstance(command.update, list):
            if kind != "list":
                raise ValueError(
                    "Tools can provide a list of messages in Command.update only when using "
                    f"list of messages as ToolNode input, got: {command.update} for tool "
                    f"'{call['name']}'"
                )
            command = deepcopy(command)
            messages = command.update
        else:
            return command
        matched = False
        for message in convert_to_messages(messages):
            if isinstance(message, ToolMessage) and message.tool_call_id == call["id"]:
                message.name = call["name"]
                matched = True
        if command.graph is None and not matched:
            raise ValueError(
                f"Expected to have a matching ToolMessage in Command.update for tool "
                f"'{call['name']}', got: {messages}. Every tool call (LLM requesting to call "
                "a tool) in the message history MUST have a corresponding ToolMessage."
            )
        return command

    def _combine(self, outputs: list[Any], kind: InputType) -> Any:
        flat: list[Any] = []
        for output in outputs:
            flat.extend(output if isinstance(output, list) else [output])
        if not any(isinstance(o, Command) for o in flat):
            return flat if kind == "list" else {self._messages_key: flat}
        combined: list[Any] = []
        parent: Command | None = None
        for output in flat:
            if isinstance(output, Command):
                if (
                    output.graph is Command.PARENT
                    and isinstance(output.goto, list)
                    and all(isinstance(s, Send) for s in output.goto)
                ):
                    goto = [*(parent.goto if parent else []), *output.goto]
                    parent = Command(graph=Command.PARENT, goto=goto)
                else:
                    combined.append(output)
            else:
                combined.append([output] if kind == "list" else {self._messages_key: [output]})
        if parent is not None:
            combined.append(parent)
        return combined


def tools_condition(state: Any, messages_key: str = "messages") -> Literal["tools", "__end__"]:
    """Route to ``"tools"`` when the last message asks for tool calls, else to END."""
    if isinstance(state, list):
        last = state[-1]
    elif (isinstance(state, dict) and (messages := state.get(messages_key, []))) or (
        messages := getattr(state, messages_key, [])
    ):
        last = messages[-1]
    else:
        raise ValueError(f"No messages found in input state to tool_edge: {state}")
    if hasattr(last, "tool_calls") and len(last.tool_calls) > 0:
        return "tools"
    return "__end__"
