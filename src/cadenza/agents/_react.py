"""The decisions of a reasoning/acting loop, as plain functions over plain data: where each
model call and tool call is recorded, what comes after a reply (answer, act, or stop at a
limit), and the usage a loop adds up. The loop itself (``cadenza.steps.react``) calls them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from cadenza.agents.model import Message, Pricing, ToolCall, Usage
from cadenza.core.errors import StepFailed

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class AgentLimitExceeded(StepFailed):
    """An agent reached ``max_steps`` without a final answer, or spent more tokens than its
    ``token_budget``."""


def model_path(path: str, turn: int) -> str:
    """Where the ``turn``-th model call of the loop at ``path`` is recorded."""
    return f"{path}#{turn}/model"


def tool_paths(path: str, turn: int, calls: Sequence[ToolCall]) -> list[str]:
    """Where each tool call asked in one reply is recorded: ``agent#2/refund:call_7``. The
    path (and so the idempotency key) is the same however often the run resumes."""
    out: list[str] = []
    for call in calls:
        base = f"{path}#{turn}/{_UNSAFE.sub('_', call.name)}:{_UNSAFE.sub('_', call.id)}"
        candidate, n = base, 1
        while candidate in out:
            n += 1
            candidate = f"{base}~{n}"
        out.append(candidate)
    return out


def with_call_ids(message: Message, prefix: str) -> Message:
    """The reply with every tool call given a unique id (models may leave them out)."""
    seen: set[str] = set()
    calls: list[ToolCall] = []
    changed = False
    for k, call in enumerate(message.tool_calls):
        if not call.id or call.id in seen:
            call = ToolCall(id=f"{prefix}{k}", name=call.name, arguments=call.arguments)
            changed = True
        seen.add(call.id)
        calls.append(call)
    return Message.assistant(message.content, calls) if changed else message


@dataclass(slots=True)
class Totals:
    """What a loop (or an orchestrator) consumed."""

    usage: Usage = field(default_factory=Usage)
    cost: float | None = None
    model_calls: int = 0
    tool_calls: int = 0

    def add_call(self, usage: Usage, pricing: Pricing | None) -> None:
        self.usage = self.usage + usage
        self.model_calls += 1
        if pricing is not None:
            self.cost = (self.cost or 0.0) + pricing.cost(usage)

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "model_calls": self.model_calls,
            "tool_calls": self.tool_calls,
        }
        if self.cost is not None:
            out["cost"] = self.cost
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Literal["answer", "act", "finish", "fail"]
    reason: str = ""
    error_type: str = ""


def decide(
    reply: Message,
    turn: int,
    *,
    max_steps: int,
    token_budget: int | None,
    on_max_steps: str,
    totals: Totals,
) -> Decision:
    """What follows the ``turn``-th reply: a final answer, tool calls to make, or a limit."""
    if token_budget is not None and totals.tokens > token_budget:
        return Decision(
            "fail",
            f"token budget exceeded: {totals.tokens} tokens in {totals.model_calls} model "
            f"calls, over the budget of {token_budget}; raise token_budget or give the agent "
            "less to do",
            "TokenBudgetExceeded",
        )
    if not reply.tool_calls:
        return Decision("answer")
    if turn >= max_steps:
        if on_max_steps == "finish":
            return Decision("finish")
        asked = ", ".join(dict.fromkeys(c.name for c in reply.tool_calls))
        return Decision(
            "fail",
            f"no final answer after max_steps={max_steps} model calls (the last reply still "
            f"calls {asked}); raise max_steps, or end with on_max_steps='finish'",
            "MaxStepsExceeded",
        )
    return Decision("act")


def as_text(value: Any) -> str:
    """A state value as the text of a user message."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def history(state: Mapping[str, Any], key: str | None, where: str) -> list[Message]:
    """The conversation so far, from ``state[key]`` (messages or their JSON)."""
    if key is None or state.get(key) is None:
        return []
    raw = state[key]
    if not isinstance(raw, list | tuple):
        raise StepFailed(
            where, f"state[{key!r}] must be a list of chat messages, got {type(raw).__name__}"
        )
    out: list[Message] = []
    for i, item in enumerate(raw):
        try:
            out.append(Message.model_validate(item))
        except ValidationError as exc:
            error = exc.errors()[0]
            field_ = ".".join(str(p) for p in error["loc"]) or "message"
            raise StepFailed(
                where, f"state[{key!r}][{i}] is not a chat message: {field_}: {error['msg']}"
            ) from None
    return out
