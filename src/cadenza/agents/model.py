"""The model protocol: chat messages in, one assistant message out (text and/or tool calls,
optionally parsed into a structured output), with token usage.

Every adapter (OpenAI-compatible, Anthropic, LangChain, scripted) speaks this one protocol so
that the REACT and ORCHESTRATOR steps never see a vendor's types. Messages are pydantic models
that dump to plain JSON: a transcript lives in the run state and in the event log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A call the model asks for: ``id`` pairs it with the tool message that answers it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One chat message. ``tool_calls`` only on assistant messages; ``tool_call_id`` (and the
    tool's ``name``) only on tool messages."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, call: ToolCall, content: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=call.id, name=call.name)

    def to_json(self) -> dict[str, Any]:
        """The compact JSON form kept in run state (empty fields left out)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class Usage(BaseModel):
    """Tokens one call (or a sum of calls) consumed."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Pricing(BaseModel):
    """Price in US dollars per million tokens, to turn usage into cost."""

    model_config = ConfigDict(frozen=True)

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_million
            + usage.output_tokens * self.output_per_million
        ) / 1_000_000


class ToolSpec(BaseModel):
    """What the model is told about a tool: its name, what it does, and a JSON schema of its
    arguments (an object schema)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ModelResponse(BaseModel):
    """The assistant's reply. ``parsed`` holds the structured output when one was asked for
    (a pydantic model instance, or a dict for a JSON schema)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    message: Message
    usage: Usage = Usage()
    model: str = ""
    stop_reason: str | None = None
    parsed: Any = None


#: What a caller may ask a structured output to be: a pydantic model class or a JSON schema.
OutputSchema = type[BaseModel] | dict[str, Any]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model. ``name`` identifies it in events and usage records (``openai:gpt-4o-mini``);
    ``pricing`` (optional, may be ``None``) turns usage into cost."""

    name: str
    pricing: Pricing | None

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        output: OutputSchema | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelResponse: ...


class ModelError(Exception):
    """A model call failed or answered something that cannot be used (a malformed tool call,
    output that does not match the schema asked for). ``retryable`` tells retry policies
    whether another attempt may help (rate limits, 5xx, timeouts)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
