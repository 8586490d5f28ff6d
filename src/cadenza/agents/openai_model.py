"""OpenAI-compatible chat completions through the official ``openai`` SDK.

One adapter serves OpenAI, Azure OpenAI's v1 endpoint, vLLM, Ollama and LM Studio: they differ
only in ``base_url`` and key. The SDK is imported when a model is created, so that
``import cadenza`` works without the ``llm`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from cadenza.agents._adapter import (
    OutputFormat,
    SdkModel,
    decode_arguments,
    import_sdk,
    make_client,
    parse_output_text,
    stop_reason,
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
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion


class OpenAIModel(SdkModel):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Structured output is asked for with ``response_format`` (``json_schema``) and validated
    here whatever the server promised. ``strict_output`` turns on OpenAI's strict schema mode,
    which needs a strict-compatible schema (every property required, no extra properties; a
    pydantic model with ``extra="forbid"`` and no defaults gives one). ``max_tokens_param``
    names the length limit the server understands: OpenAI's newer models want
    ``max_completion_tokens``, many local servers only ``max_tokens``.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncOpenAI | None = None,
        name: str | None = None,
        pricing: Pricing | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        strict_output: bool = False,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = (
            "max_completion_tokens"
        ),
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.name = name or f"openai:{model}"
        self.pricing = pricing
        self.strict_output = strict_output
        self.max_tokens_param = max_tokens_param
        self.extra_body = dict(extra_body) if extra_body else None
        self._sdk = import_sdk("openai", package="openai", needed_by="OpenAIModel")
        self._error = self._sdk.OpenAIError
        if client is None:
            client = make_client(
                self._sdk.AsyncOpenAI,
                self._error,
                f"{self.name}: cannot create the OpenAI client",
                timeout=timeout,
                api_key=api_key,
                base_url=base_url,
                max_retries=max_retries,
                default_headers=default_headers,
            )
        self.client: AsyncOpenAI = client

    async def _send(self, request: dict[str, Any]) -> Any:
        return await self.client.chat.completions.create(**request)

    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        fmt: OutputFormat | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        if not messages:
            raise ValueError(f"{self.name}: chat() needs at least one message")
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(i, m) for i, m in enumerate(messages)],
        }
        if tools:
            request["tools"] = [to_openai_tool(t) for t in tools]
        if fmt is not None:
            schema: dict[str, Any] = {
                "name": fmt.name,
                "schema": fmt.schema,
                "strict": self.strict_output,
            }
            if fmt.description:
                schema["description"] = fmt.description
            request["response_format"] = {"type": "json_schema", "json_schema": schema}
        if temperature is not None:
            request["temperature"] = temperature
        if max_tokens is not None:
            request[self.max_tokens_param] = max_tokens
        if self.extra_body:
            request["extra_body"] = self.extra_body
        return request

    def _response(self, completion: ChatCompletion, fmt: OutputFormat | None) -> ModelResponse:
        if not completion.choices:
            raise ModelError(f"{self._where}: the reply has no choices")
        choice = completion.choices[0]
        message = choice.message
        calls: list[ToolCall] = []
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)
            if function is None:
                raise ModelError(
                    f"{self._where}: unsupported tool call of type {call.type!r} (id {call.id!r})"
                )
            arguments = decode_arguments(function.arguments, tool=function.name, where=self._where)
            calls.append(ToolCall(id=call.id, name=function.name, arguments=arguments))
        content = message.content or ""
        refusal = getattr(message, "refusal", None)
        stop = stop_reason(choice.finish_reason)
        parsed: Any = None
        if fmt is not None and not calls:
            if refusal:
                raise ModelError(f"{self._where}: the model refused to answer: {refusal}")
            parsed = parse_output_text(fmt, content, where=self._where, stop=stop)
        elif refusal and not content:
            content = refusal
        usage = Usage()
        if completion.usage is not None:
            usage = Usage(
                input_tokens=completion.usage.prompt_tokens or 0,
                output_tokens=completion.usage.completion_tokens or 0,
            )
        return ModelResponse(
            message=Message.assistant(content, calls),
            usage=usage,
            model=completion.model or self.model,
            stop_reason=stop,
            parsed=parsed,
        )


def to_openai_message(index: int, message: Message) -> dict[str, Any]:
    """One message in the chat-completions layout (tool calls' arguments as JSON text)."""
    if message.role == "tool":
        if not message.tool_call_id:
            raise ValueError(f"messages[{index}]: a tool message needs tool_call_id")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
