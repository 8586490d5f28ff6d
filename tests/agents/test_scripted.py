"""The scripted model: replies from a script then rules, structured output, usage, errors,
a recorded transcript, and scripts loaded from JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from cadenza import ChatModel, Message, ModelError, Pricing, ScriptedModel, ToolSpec, Usage


class Verdict(BaseModel):
    label: str
    score: float


async def test_a_script_answers_in_order_and_records_every_call() -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "lookup", "arguments": {"id": 1}}]},
            "It shipped yesterday.",
        ]
    )
    assert isinstance(model, ChatModel)
    spec = ToolSpec(name="lookup")
    first = await model.chat([Message.user("where is order 1?")], tools=[spec])
    assert first.message.role == "assistant"
    assert [(c.name, c.arguments) for c in first.message.tool_calls] == [("lookup", {"id": 1})]
    assert first.message.tool_calls[0].id == "call_1_0", "ids follow the conversation"
    assert first.stop_reason == "tool_calls"
    second = await model.chat([Message.user("where is order 1?"), first.message])
    assert second.message.content == "It shipped yesterday."
    assert second.stop_reason == "stop"
    assert model.remaining == 0
    assert [len(c.messages) for c in model.calls] == [1, 2]
    assert model.calls[0].tools == [spec]
    assert model.calls[1].response is second
    with pytest.raises(ModelError, match="no scripted reply for call 3"):
        await model.chat([Message.user("and now?")])


async def test_rules_match_the_last_user_or_tool_message() -> None:
    model = ScriptedModel(
        rules=[
            (r"refund (\d+)", {"tool_calls": [{"name": "refund", "arguments": {"id": 9}}]}),
            lambda messages: "counted" if len(messages) > 3 else None,
        ],
        default="I do not know.",
    )
    refund = await model.chat([Message.user("please refund 9")])
    assert refund.message.tool_calls[0].name == "refund"
    tool_result = Message.tool(refund.message.tool_calls[0], "refund 9 done")
    again = await model.chat([Message.user("please refund 9"), refund.message, tool_result])
    assert again.message.tool_calls, "the tool message matched the pattern too"
    long = [Message.user("a"), Message.assistant("b"), Message.user("c"), Message.user("d")]
    assert (await model.chat(long)).message.content == "counted"
    assert (await model.chat([Message.user("hello")])).message.content == "I do not know."


async def test_reply_functions_see_the_conversation() -> None:
    def echo(messages: list[Message]) -> str:
        return f"you said {messages[-1].content!r} after {len(messages) - 1} messages"

    model = ScriptedModel([echo])
    reply = await model.chat([Message.system("be nice"), Message.user("hi")])
    assert reply.message.content == "you said 'hi' after 1 messages"


async def test_structured_output_is_validated_against_the_schema() -> None:
    model = ScriptedModel(
        [
            {"output": {"label": "spam", "score": 0.9}},
            '{"label": "ham", "score": 0.1}',
            {"output": {"label": "spam"}},
            "not json",
        ]
    )
    parsed = (await model.chat([Message.user("x")], output=Verdict)).parsed
    assert parsed == Verdict(label="spam", score=0.9)
    from_text = (await model.chat([Message.user("x")], output=Verdict)).parsed
    assert from_text == Verdict(label="ham", score=0.1)
    with pytest.raises(ModelError, match="does not match Verdict"):
        await model.chat([Message.user("x")], output=Verdict)
    with pytest.raises(ModelError, match="no 'output' and its text is not JSON"):
        await model.chat([Message.user("x")], output={"type": "object"})


async def test_usage_is_given_or_counted_from_text_and_priced() -> None:
    model = ScriptedModel(
        [{"content": "ok", "usage": {"input_tokens": 100, "output_tokens": 7}}, "x" * 40],
        pricing=Pricing(input_per_million=1.0, output_per_million=2.0),
    )
    given = await model.chat([Message.user("hello")])
    assert given.usage == Usage(input_tokens=100, output_tokens=7)
    counted = await model.chat([Message.user("y" * 41)])
    assert counted.usage == Usage(input_tokens=11, output_tokens=10)
    assert model.pricing is not None
    assert model.pricing.cost(given.usage) == pytest.approx(114 / 1_000_000)


async def test_scripted_errors_say_whether_to_retry() -> None:
    model = ScriptedModel([{"error": "rate limited", "retryable": True}, {"error": "bad request"}])
    with pytest.raises(ModelError) as first:
        await model.chat([Message.user("x")])
    assert first.value.retryable and str(first.value) == "rate limited"
    with pytest.raises(ModelError) as second:
        await model.chat([Message.user("x")])
    assert not second.value.retryable


def test_malformed_scripts_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match=r"script\[1\]: unknown reply keys \['tools'\]"):
        ScriptedModel(["fine", {"tools": []}])
    with pytest.raises(ValueError, match=r"tool_calls\[0\]: a tool call is"):
        ScriptedModel([{"tool_calls": [{"arguments": {}}]}])
    with pytest.raises(ValueError, match="wrap a single reply in a list"):
        ScriptedModel("hello")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"rules\[0\]: a rule is"):
        ScriptedModel(rules=[("only one",)])  # type: ignore[list-item]


async def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "support.json"
    path.write_text(
        json.dumps(
            {
                "script": [{"tool_calls": [{"name": "lookup", "arguments": {"id": 3}}]}],
                "rules": [{"match": "shipped", "reply": "Your order shipped."}],
                "pricing": {"input_per_million": 0.15, "output_per_million": 0.6},
            }
        )
    )
    model = ScriptedModel.from_file(path)
    assert model.name == "scripted:support"
    assert model.pricing == Pricing(input_per_million=0.15, output_per_million=0.6)
    first = await model.chat([Message.user("where is 3?")])
    call = first.message.tool_calls[0]
    second = await model.chat(
        [Message.user("where is 3?"), first.message, Message.tool(call, "shipped")]
    )
    assert second.message.content == "Your order shipped."

    (tmp_path / "list.json").write_text('["one", "two"]')
    assert ScriptedModel.from_file(tmp_path / "list.json").remaining == 2
    (tmp_path / "bad.json").write_text('{"scripts": []}')
    with pytest.raises(ValueError, match="unknown keys"):
        ScriptedModel.from_file(tmp_path / "bad.json")
