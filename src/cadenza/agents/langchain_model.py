"""Any LangChain chat model (a ``langchain_core`` ``BaseChatModel``) as a Cadenza ChatModel.

This opens every provider LangChain integrates to Cadenza's REACT and ORCHESTRATOR steps. Tools
go through ``bind_tools``, structured output through ``with_structured_output``, token counts
come from ``usage_metadata``; the reply is validated here as with the native adapters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cadenza.agents._adapter import (
    OutputFormat,
    import_sdk,
    output_format,
    parse_output_text,
    stop_reason,
    to_model_error,
    validate_output,
    validation_problems,
)
from cadenza.agents.model import (
    Message,
    ModelError,
    ModelResponse,
    OutputSchema,
    Pricing,
    ToolCall,
    ToolSpec,
    Usage,
)
from cadenza.agents.openai_model import to_openai_tool

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage

_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


class LangChainModel:
    """Wraps a LangChain chat model.

    LangChain models are configured when they are built; per-call ``temperature`` and
    ``max_tokens`` are applied to a copy of the model where it has such a field
    (``max_tokens``, ``max_output_tokens``, ``num_predict``...) and ignored otherwise.
    """

    def __init__(
        self, model: BaseChatModel, *, name: str | None = None, pricing: Pricing | None = None
    ) -> None:
        exceptions = import_sdk(
            "langchain_core.exceptions", package="langchain-core", needed_by="LangChainModel"
        )
        self._parser_error: type[Exception] = exceptions.OutputParserException
        self.model = model
        self.model_name = str(
            getattr(model, "model_name", None) or getattr(model, "model", None) or model._llm_type
        )
        self.name = name or f"langchain:{self.model_name}"
        self.pricing = pricing

    def __repr__(self) -> str:
        return f"LangChainModel({self.name!r}, {type(self.model).__name__})"

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        output: OutputSchema | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        if not messages:
            raise ValueError(f"{self.name}: chat() needs at least one message")
        fmt = output_format(output) if output is not None else None
        prompt = [to_langchain_message(m, index=i) for i, m in enumerate(messages)]
        model = self._configured(temperature, max_tokens)
        if fmt is not None and not tools:
            schema: Any = fmt.model or {"title": fmt.name, **fmt.schema}
            structured = model.with_structured_output(schema, include_raw=True)
            try:
                result = await structured.ainvoke(prompt)
            except (ValidationError, self._parser_error) as exc:
                # Some integrations parse inside the call and raise instead of reporting.
                problems = validation_problems(exc) if isinstance(exc, ValidationError) else exc
                raise ModelError(
                    f"{self.name}: the reply does not match {fmt.name!r}: {problems}"
                ) from exc
            except Exception as exc:
                raise to_model_error(exc, where=self.name) from exc
            if not isinstance(result, dict):
                raise ModelError(f"{self.name}: with_structured_output gave no raw reply")
            return self._structured(result, fmt)
        runnable: Any = model
        if tools:
            specs = [to_openai_tool(t) for t in tools]
            if fmt is not None:
                if any(t.name == fmt.name for t in tools):
                    raise ValueError(
                        f"{self.name}: a tool is named {fmt.name!r} like the output; rename one"
                    )
                spec = ToolSpec(name=fmt.name, description=fmt.description, parameters=fmt.schema)
                specs.append(to_openai_tool(spec))
                runnable = model.bind_tools(specs, tool_choice="any")
            else:
                runnable = model.bind_tools(specs)
        try:
            raw = await runnable.ainvoke(prompt)
        except Exception as exc:
            raise to_model_error(exc, where=self.name) from exc
        return self._reply(raw, fmt)

    def _configured(self, temperature: float | None, max_tokens: int | None) -> BaseChatModel:
        fields = type(self.model).model_fields
        update: dict[str, Any] = {}
        if temperature is not None and "temperature" in fields:
            update["temperature"] = temperature
        if max_tokens is not None:
            field = next((f for f in _MAX_TOKENS_FIELDS if f in fields), None)
            if field is not None:
                update[field] = max_tokens
        return self.model.model_copy(update=update) if update else self.model

    def _structured(self, result: dict[str, Any], fmt: OutputFormat) -> ModelResponse:
        raw: AIMessage = result["raw"]
        stop = _stop(raw)
        if result.get("parsing_error") is not None:
            raise ModelError(
                f"{self.name}: the reply does not match {fmt.name!r}: {result['parsing_error']}"
            )
        if result.get("parsed") is None:
            refusal = raw.additional_kwargs.get("refusal")
            said = refusal or _text(raw.content) or raw.tool_calls
            raise ModelError(f"{self.name}: the model gave no {fmt.name!r} output: {said!r}")
        parsed = validate_output(fmt, result["parsed"], where=self.name, stop=stop)
        content = _text(raw.content) or json.dumps(_plain(parsed), ensure_ascii=False)
        return self._response(raw, content, (), "stop" if stop == "tool_calls" else stop, parsed)

    def _reply(self, raw: AIMessage, fmt: OutputFormat | None) -> ModelResponse:
        reply = from_langchain_message(raw, where=self.name)
        calls = list(reply.tool_calls)
        content = reply.content
        stop = _stop(raw)
        parsed: Any = None
        if fmt is not None:
            chosen = next((c for c in calls if c.name == fmt.name), None)
            if chosen is not None:
                calls.remove(chosen)
                parsed = validate_output(fmt, chosen.arguments, where=self.name, stop=stop)
                content = content or json.dumps(chosen.arguments, ensure_ascii=False)
                if not calls and stop == "tool_calls":
                    stop = "stop"
            elif not calls:
                parsed = parse_output_text(fmt, content, where=self.name, stop=stop)
        return self._response(raw, content, calls, stop, parsed)

    def _response(
        self,
        raw: AIMessage,
        content: str,
        calls: Sequence[ToolCall],
        stop: str | None,
        parsed: Any,
    ) -> ModelResponse:
        usage = Usage()
        if raw.usage_metadata:
            usage = Usage(
                input_tokens=raw.usage_metadata.get("input_tokens", 0),
                output_tokens=raw.usage_metadata.get("output_tokens", 0),
            )
        meta = raw.response_metadata or {}
        return ModelResponse(
            message=Message.assistant(content, calls),
            usage=usage,
            model=str(meta.get("model_name") or meta.get("model") or self.model_name),
            stop_reason=stop,
            parsed=parsed,
        )


def to_langchain_message(message: Message, *, index: int = 0) -> BaseMessage:
    """A Cadenza message as the LangChain message of the same role."""
    import_sdk("langchain_core.messages", package="langchain-core", needed_by="LangChainModel")
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    if message.role == "system":
        return SystemMessage(content=message.content)
    if message.role == "user":
        return HumanMessage(content=message.content)
    if message.role == "assistant":
        return AIMessage(
            content=message.content,
            tool_calls=[
                {"name": c.name, "args": dict(c.arguments), "id": c.id, "type": "tool_call"}
                for c in message.tool_calls
            ],
        )
    if not message.tool_call_id:
        raise ValueError(f"messages[{index}]: a tool message needs tool_call_id")
    return ToolMessage(
        content=message.content, tool_call_id=message.tool_call_id, name=message.name
    )


def from_langchain_message(message: BaseMessage, *, where: str = "langchain") -> Message:
    """A LangChain message as a Cadenza message; a tool call whose arguments could not be
    parsed (LangChain's ``invalid_tool_calls``) is a ModelError carrying the raw text."""
    kind = message.type
    text = _text(message.content)
    if kind == "system":
        return Message.system(text)
    if kind == "human":
        return Message.user(text)
    if kind == "tool":
        call_id = str(getattr(message, "tool_call_id", ""))
        return Message(role="tool", content=text, tool_call_id=call_id, name=message.name)
    if kind != "ai":
        raise ValueError(f"{where}: cannot convert a LangChain message of type {kind!r}")
    invalid = getattr(message, "invalid_tool_calls", None) or []
    if invalid:
        bad = invalid[0]
        raise ModelError(
            f"{where}: the arguments of the call to tool {bad.get('name')!r} are not valid "
            f"JSON ({bad.get('error') or 'unparsable'}): {bad.get('args')!r}"
        )
    calls = [
        ToolCall(
            id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            name=call["name"],
            arguments=call.get("args") or {},
        )
        for call in getattr(message, "tool_calls", None) or []
    ]
    return Message.assistant(text, calls)


def _text(content: str | list[str | dict[str, Any]]) -> str:
    """The text of a message whose content may be a list of blocks (Anthropic's layout)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _stop(raw: AIMessage) -> str | None:
    meta = raw.response_metadata or {}
    return stop_reason(meta.get("finish_reason") or meta.get("stop_reason"))


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
