"""A deterministic chat model for tests and offline examples.

Replies come from a *script* (consumed one per call, in call order) and then from *rules*
(matched against the last user or tool message, every call afresh). A script is the simplest
way to test one conversation; rules are stateless, so a workflow resumed in a new process
gets the same answers, and concurrent conversations (workers) do not race for script lines.

A reply is text (a final answer), a :class:`Message` or :class:`ModelResponse`, a callable
``reply(messages) -> reply`` or a mapping with any of::

    content / text   the assistant's text
    tool_calls       [{"name": ..., "arguments": {...}, "id": optional}, ...]
    output           a structured output (a dict), for calls that ask for one
    usage            {"input_tokens": n, "output_tokens": m} (else counted from text length)
    stop_reason      passed through
    error            fail the call with ModelError(error); "retryable": true to allow retries
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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

Reply = Any  # str | Mapping | Message | ModelResponse | Callable[[list[Message]], Reply | None]
Rule = Callable[[list[Message]], Any] | tuple[str | re.Pattern[str], Reply]

_KEYS = frozenset(
    {"content", "text", "tool_calls", "output", "usage", "stop_reason", "error", "retryable"}
)


@dataclass(slots=True)
class ScriptedCall:
    """One call the model received, and what it answered (``None`` when it failed)."""

    messages: list[Message]
    tools: list[ToolSpec]
    output: OutputSchema | None
    temperature: float | None
    max_tokens: int | None
    response: ModelResponse | None = None

    @property
    def last(self) -> Message:
        return self.messages[-1]


@dataclass(slots=True)
class _Rule:
    test: Callable[[list[Message]], Any]
    pattern: re.Pattern[str] | None = None
    reply: Reply = None


class ScriptedModel:
    """A :class:`~cadenza.agents.model.ChatModel` that answers from a script and rules, and
    records every call in :attr:`calls` so tests can assert on the transcript."""

    def __init__(
        self,
        script: Sequence[Reply] = (),
        *,
        rules: Sequence[Rule] = (),
        default: Reply | None = None,
        name: str = "scripted",
        pricing: Pricing | None = None,
    ) -> None:
        if isinstance(script, str | Mapping):
            raise ValueError("script is a list of replies; wrap a single reply in a list")
        for i, reply in enumerate(script):
            _check(reply, f"script[{i}]")
        self.script = list(script)
        self.rules = [_rule(r, f"rules[{i}]") for i, r in enumerate(rules)]
        if default is not None:
            _check(default, "default")
        self.default = default
        self.name = name
        self.pricing = pricing
        self.calls: list[ScriptedCall] = []
        self._position = 0

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ScriptedModel:
        """Load a script from JSON: a list of replies, or an object with ``script``,
        ``rules`` (``[{"match": REGEX, "reply": REPLY}]``), ``default``, ``name`` and
        ``pricing`` (``{"input_per_million": .., "output_per_million": ..}``)."""
        file = Path(path)
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the model script {file}: {exc}") from None
        if isinstance(data, list):
            data = {"script": data}
        if not isinstance(data, dict):
            raise ValueError(f"{file}: a model script is a list of replies or an object")
        unknown = set(data) - {"script", "rules", "default", "name", "pricing"}
        if unknown:
            raise ValueError(f"{file}: unknown keys {sorted(unknown)}")
        rules: list[Rule] = []
        for i, rule in enumerate(data.get("rules") or []):
            if not isinstance(rule, dict) or set(rule) != {"match", "reply"}:
                raise ValueError(f"{file}: rules[{i}] is {{'match': REGEX, 'reply': REPLY}}")
            rules.append((rule["match"], rule["reply"]))
        options: dict[str, Any] = {
            "rules": rules,
            "default": data.get("default"),
            "name": data.get("name") or f"scripted:{file.stem}",
            "pricing": Pricing(**data["pricing"]) if data.get("pricing") else None,
        }
        options.update(overrides)
        try:
            return cls(data.get("script") or [], **options)
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from None

    @property
    def remaining(self) -> int:
        """Script replies not used yet."""
        return len(self.script) - self._position

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        output: OutputSchema | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        received = list(messages)
        call = ScriptedCall(received, list(tools), output, temperature, max_tokens)
        self.calls.append(call)
        reply = self._next(received)
        while callable(reply) and not isinstance(reply, Message | ModelResponse):
            reply = reply(received)
            if reply is None:
                raise ModelError(f"{self.name}: a scripted reply function returned None")
            _check(reply, "the reply a function returned")
        call.response = self._respond(reply, received, output)
        return call.response

    def _next(self, messages: list[Message]) -> Reply:
        if self._position < len(self.script):
            self._position += 1
            return self.script[self._position - 1]
        for rule in self.rules:
            found = rule.test(messages)
            if found is not None and found is not False:
                return rule.reply if rule.pattern is not None else found
        if self.default is not None:
            return self.default
        last = _last_input(messages)
        raise ModelError(
            f"{self.name}: no scripted reply for call {len(self.calls)}: the script has "
            f"{len(self.script)} replies and no rule matches the last message {last[:120]!r}"
        )

    def _respond(
        self, reply: Reply, messages: list[Message], output: OutputSchema | None
    ) -> ModelResponse:
        if isinstance(reply, ModelResponse):
            return reply
        if isinstance(reply, Message):
            if reply.role != "assistant":
                raise ModelError(f"{self.name}: a scripted reply must be an assistant message")
            return self._response(reply, messages, None, output, None, None)
        if isinstance(reply, str):
            return self._response(Message.assistant(reply), messages, None, output, None, None)
        spec = dict(reply)
        if "error" in spec:
            raise ModelError(str(spec["error"]), retryable=bool(spec.get("retryable")))
        calls = [
            ToolCall(
                id=str(c.get("id") or f"call_{len(messages)}_{k}"),
                name=str(c["name"]),
                arguments=dict(c.get("arguments") or {}),
            )
            for k, c in enumerate(spec.get("tool_calls") or [])
        ]
        structured = spec.get("output")
        content = spec.get("content", spec.get("text"))
        if content is None:
            content = json.dumps(structured) if structured is not None else ""
        message = Message.assistant(str(content), calls)
        usage = Usage(**spec["usage"]) if spec.get("usage") else None
        return self._response(message, messages, structured, output, usage, spec.get("stop_reason"))

    def _response(
        self,
        message: Message,
        messages: list[Message],
        structured: Any,
        output: OutputSchema | None,
        usage: Usage | None,
        stop_reason: str | None,
    ) -> ModelResponse:
        parsed = _parse(self.name, structured, message.content, output) if output else None
        if usage is None:
            usage = Usage(
                input_tokens=sum(_tokens(_text(m)) for m in messages),
                output_tokens=_tokens(_text(message)),
            )
        reason = stop_reason or ("tool_calls" if message.tool_calls else "stop")
        return ModelResponse(
            message=message, usage=usage, model=self.name, stop_reason=reason, parsed=parsed
        )


def _parse(name: str, structured: Any, content: str, output: OutputSchema) -> Any:
    """The structured output a call asked for: the reply's ``output``, else its text as JSON,
    validated when ``output`` is a pydantic model class."""
    if structured is None:
        try:
            structured = json.loads(content)
        except json.JSONDecodeError:
            raise ModelError(
                f"{name}: the call asked for structured output, but the scripted reply has "
                "no 'output' and its text is not JSON"
            ) from None
    if isinstance(output, type) and issubclass(output, BaseModel):
        try:
            return output.model_validate(structured)
        except ValidationError as exc:
            raise ModelError(
                f"{name}: the scripted output does not match {output.__name__}: {exc}"
            ) from None
    return structured


def _rule(rule: Rule, where: str) -> _Rule:
    if callable(rule):
        return _Rule(test=rule)
    if isinstance(rule, tuple) and len(rule) == 2:
        pattern, reply = rule
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        if not isinstance(compiled, re.Pattern):
            raise ValueError(f"{where}: a rule's pattern is a regular expression")
        _check(reply, f"{where} reply")
        return _Rule(
            test=lambda messages: compiled.search(_last_input(messages)),
            pattern=compiled,
            reply=reply,
        )
    raise ValueError(f"{where}: a rule is a function of the messages or a (pattern, reply) pair")


def _check(reply: Reply, where: str) -> None:
    """Refuse malformed replies when the script is built, not when the call comes."""
    if isinstance(reply, str | Message | ModelResponse) or callable(reply):
        return
    if not isinstance(reply, Mapping):
        raise ValueError(f"{where}: a reply is text, a mapping, a Message or a function")
    unknown = set(reply) - _KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown reply keys {sorted(unknown)}; use {', '.join(sorted(_KEYS))}"
        )
    for k, call in enumerate(reply.get("tool_calls") or []):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise ValueError(f"{where}.tool_calls[{k}]: a tool call is {{'name': ..., ...}}")
        if not isinstance(call.get("arguments", {}), Mapping):
            raise ValueError(f"{where}.tool_calls[{k}].arguments must be an object")


def _last_input(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role in ("user", "tool"):
            return message.content
    return ""


def _text(message: Message) -> str:
    calls = [c.model_dump(mode="json") for c in message.tool_calls]
    return message.content + (json.dumps(calls) if calls else "")


def _tokens(text: str) -> int:
    """About four characters per token, as a rough count for text with no usage given."""
    return math.ceil(len(text) / 4)


__all__ = ["ScriptedCall", "ScriptedModel"]
