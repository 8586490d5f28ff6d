"""Anthropic's messages API through the official ``anthropic`` SDK.

The messages API differs from the chat protocol in three ways this adapter bridges: the system
prompt is a parameter, not a message; tool calls and their results are content blocks, and the
results of one turn's calls go back together in one user message; and structured output is
obtained by forcing a call to a tool whose input schema is the output schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.agents._adapter import (
    OutputFormat,
    SdkModel,
    import_sdk,
    make_client,
    stop_reason,
    validate_output,
)
from cadenza.agents.model import (
    Message,
    ModelError,
    ModelResponse,
    Pricing,
    ToolCall,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message as AnthropicMessage


class AnthropicModel(SdkModel):
    """A Claude model behind the messages API.

    ``max_tokens`` is mandatory in that API; ``default_max_tokens`` is used when a call does not
    give one. When ``output`` and ``tools`` are asked for together, the output tool is offered
    beside the others and the model must call one of them: calling the output tool is its final
    answer.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncAnthropic | None = None,
        name: str | None = None,
        pricing: Pricing | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        default_max_tokens: int = 4096,
    ) -> None:
        self.model = model
        self.name = name or f"anthropic:{model}"
        self.pricing = pricing
        self.default_max_tokens = default_max_tokens
        self._sdk = import_sdk("anthropic", package="anthropic", needed_by="AnthropicModel")
        self._error = self._sdk.AnthropicError
        if client is None:
            client = make_client(
                self._sdk.AsyncAnthropic,
                self._error,
                f"{self.name}: cannot create the Anthropic client",
                timeout=timeout,
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
                default_headers=default_headers,
            )
        self.client: AsyncAnthropic = client

    async def _send(self, request: dict[str, Any]) -> Any:
        return await self.client.messages.create(**request)

    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        fmt: OutputFormat | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        system, turns = to_anthropic_turns(messages)
        if not turns:
            raise ValueError(f"{self.name}: chat() needs at least one non-system message")
        request: dict[str, Any] = {
            "model": self.model,
            "messages": turns,
            "max_tokens": max_tokens if max_tokens is not None else self.default_max_tokens,
        }
        if system:
            request["system"] = system
        offered = [to_anthropic_tool(t) for t in tools]
        if fmt is not None:
            if fmt.schema.get("type") != "object":
                raise ValueError(
                    f"{self.name}: structured output goes through a tool call, so its schema "
                    f"must describe an object (type 'object'), not {fmt.schema.get('type')!r}"
                )
            if any(t.name == fmt.name for t in tools):
                raise ValueError(
                    f"{self.name}: a tool is named {fmt.name!r} like the output; rename one"
                )
            offered.append(
                {
                    "name": fmt.name,
                    "description": fmt.description or f"Give the final answer as {fmt.name}.",
                    "input_schema": fmt.schema,
                }
            )
            request["tool_choice"] = (
                {"type": "any"} if tools else {"type": "tool", "name": fmt.name}
            )
        if offered:
            request["tools"] = offered
        if temperature is not None:
            # Recent SDKs no longer name ``temperature`` (the newest models ignore it); the
            # API still takes it for the models that use it.
            request["extra_body"] = {"temperature": temperature}
        return request

    def _response(self, reply: AnthropicMessage, fmt: OutputFormat | None) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        output_input: dict[str, Any] | None = None
        for block in reply.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if not isinstance(block.input, dict):
                    raise ModelError(
                        f"{self._where}: the input of the call to tool {block.name!r} is not a "
                        f"JSON object: {block.input!r}"
                    )
                if fmt is not None and block.name == fmt.name:
                    output_input = block.input
                else:
                    calls.append(ToolCall(id=block.id, name=block.name, arguments=block.input))
        stop = stop_reason(reply.stop_reason)
        content = "".join(texts)
        parsed: Any = None
        if fmt is not None and not calls:
            if output_input is None:
                raise ModelError(
                    f"{self._where}: the model did not call the output tool {fmt.name!r} "
                    f"(stop reason {reply.stop_reason!r}); it said: {content[:500]!r}"
                )
            parsed = validate_output(fmt, output_input, where=self._where, stop=stop)
            content = json.dumps(output_input, ensure_ascii=False)
            if stop == "tool_calls":
                stop = "stop"
        usage = reply.usage
        input_tokens = (
            usage.input_tokens
            + (getattr(usage, "cache_creation_input_tokens", None) or 0)
            + (getattr(usage, "cache_read_input_tokens", None) or 0)
        )
        return ModelResponse(
            message=Message.assistant(content, calls),
            usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens),
            model=reply.model or self.model,
            stop_reason=stop,
            parsed=parsed,
        )


def to_anthropic_turns(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the turns of a transcript in the messages-API layout.

    Consecutive messages of one side share a turn, so the results of one turn's tool calls
    (and any user text after them) go back in a single user message. An assistant message
    with neither text nor tool calls is left out: the API refuses empty content.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == "system":
            system.append(message.content)
            continue
        blocks: list[dict[str, Any]]
        if message.role == "tool":
            if not message.tool_call_id:
                raise ValueError(f"messages[{index}]: a tool message needs tool_call_id")
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            ]
        elif message.role == "assistant":
            role = "assistant"
            blocks = [{"type": "text", "text": message.content}] if message.content else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in message.tool_calls
            ]
            if not blocks:
                continue
        else:
            role = "user"
            blocks = [{"type": "text", "text": message.content}]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def to_anthropic_tool(tool: ToolSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        spec["description"] = tool.description
    return spec
