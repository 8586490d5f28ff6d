"""AnthropicModel through the real ``anthropic`` SDK against a local messages-API server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel

from cadenza.agents.anthropic_model import AnthropicModel
from cadenza.agents.model import ChatModel, Message, ModelError, ToolCall, ToolSpec, Usage
from tests.agents.protocol_servers import (
    ProtocolServer,
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_server,
    anthropic_text,
    anthropic_tool_use,
)
from tests.probes import needs

pytestmark = needs("anthropic", "llm")

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
LABEL_SCHEMA = {
    "title": "label",
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
}


class Plan(BaseModel):
    """A plan of work."""

    goal: str
    steps: list[str]


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with anthropic_server() as s:
        yield s


@pytest.fixture
async def model(server: ProtocolServer) -> AsyncIterator[AnthropicModel]:
    m = AnthropicModel(
        "claude-3-5-haiku-latest", api_key="sk-ant-test", base_url=server.url, max_retries=0
    )
    yield m
    await m.client.close()


async def test_plain_text_reply_with_system_prompt_split_out(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(
        anthropic_message(
            anthropic_text("Bonjour"),
            anthropic_text(" !"),
            input_tokens=30,
            output_tokens=4,
            cache_read_input_tokens=100,
        )
    )
    reply = await model.chat(
        [Message.system("Answer in French."), Message.system("Be brief."), Message.user("Hello")],
        temperature=0.0,
    )
    assert isinstance(model, ChatModel)
    assert reply.message == Message.assistant("Bonjour !")
    assert reply.usage == Usage(input_tokens=130, output_tokens=4)
    assert reply.stop_reason == "stop"
    assert reply.model == "claude-3-5-haiku-20241022"
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    # older SDKs send the key as x-api-key, newer ones as a bearer token
    key = sent.headers.get("x-api-key") or sent.headers.get("authorization", "")
    assert key.removeprefix("Bearer ") == "sk-ant-test"
    assert "anthropic-version" in sent.headers
    assert sent.body == {
        "model": "claude-3-5-haiku-latest",
        "system": "Answer in French.\n\nBe brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 4096,
        "temperature": 0.0,
    }


async def test_several_tool_calls_in_one_reply(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(
        anthropic_message(
            anthropic_text("Let me check both."),
            anthropic_tool_use("toolu_01A", "get_weather", {"city": "Paris"}),
            anthropic_tool_use("toolu_01B", "get_weather", {"city": "Oslo"}),
        )
    )
    reply = await model.chat([Message.user("Weather in Paris and Oslo?")], tools=[WEATHER])
    assert reply.stop_reason == "tool_calls"
    assert reply.message.content == "Let me check both."
    assert reply.message.tool_calls == (
        ToolCall(id="toolu_01A", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_01B", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert server.last["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert "tool_choice" not in server.last


async def test_tool_results_of_one_turn_go_back_in_one_user_message(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    paris = ToolCall(id="toolu_01A", name="get_weather", arguments={"city": "Paris"})
    oslo = ToolCall(id="toolu_01B", name="get_weather", arguments={"city": "Oslo"})
    server.reply(anthropic_message(anthropic_text("Paris 18C, Oslo 9C.")))
    await model.chat(
        [
            Message.system("You are helpful."),
            Message.user("Weather?"),
            Message.assistant("Checking.", [paris, oslo]),
            Message.tool(paris, "18C"),
            Message.tool(oslo, "9C"),
            Message.user("Also: which is warmer?"),
            Message.assistant(""),
        ],
        tools=[WEATHER],
    )
    assert server.last["system"] == "You are helpful."
    assert server.last["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "9C"},
                {"type": "text", "text": "Also: which is warmer?"},
            ],
        },
    ]


async def test_structured_output_from_a_pydantic_model_by_a_forced_tool_call(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    plan = {"goal": "ship", "steps": ["build", "test"]}
    server.reply(anthropic_message(anthropic_tool_use("toolu_01P", "Plan", plan)))
    reply = await model.chat([Message.user("Plan the release")], output=Plan)
    assert reply.parsed == Plan(**plan)
    assert reply.message.tool_calls == ()
    assert json.loads(reply.message.content) == plan
    assert reply.stop_reason == "stop"
    assert server.last["tool_choice"] == {"type": "tool", "name": "Plan"}
    assert server.last["tools"] == [
        {"name": "Plan", "description": "A plan of work.", "input_schema": Plan.model_json_schema()}
    ]


async def test_structured_output_from_a_dict_schema(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(
        anthropic_message(anthropic_tool_use("t1", "label", {"label": "ham", "score": 0.2}))
    )
    reply = await model.chat([Message.user("Lunch at 1?")], output=LABEL_SCHEMA)
    assert reply.parsed == {"label": "ham", "score": 0.2}
    assert server.last["tools"][0]["input_schema"] == LABEL_SCHEMA
    assert server.last["tools"][0]["description"] == "Give the final answer as label."


@pytest.mark.parametrize(
    ("tool_input", "expected"),
    [
        ({"label": "eggs", "score": 1}, r"does not match the output schema 'label' at label"),
        ({"label": "spam"}, r"'score' is a required property"),
    ],
)
async def test_an_output_that_does_not_match_the_schema_is_a_model_error(
    model: AnthropicModel, server: ProtocolServer, tool_input: dict[str, object], expected: str
) -> None:
    server.reply(anthropic_message(anthropic_tool_use("t1", "label", tool_input)))
    with pytest.raises(ModelError, match=expected) as caught:
        await model.chat([Message.user("x")], output=LABEL_SCHEMA)
    assert caught.value.retryable is False


async def test_an_output_that_does_not_fit_the_pydantic_model_is_a_model_error(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(anthropic_message(anthropic_tool_use("t1", "Plan", {"goal": "ship"})))
    with pytest.raises(ModelError, match="does not match Plan: steps: Field required"):
        await model.chat([Message.user("x")], output=Plan)


async def test_no_output_tool_call_is_a_model_error(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(anthropic_message(anthropic_text("I'd rather not.")))
    with pytest.raises(ModelError, match=r"did not call the output tool 'label'.*rather not"):
        await model.chat([Message.user("x")], output=LABEL_SCHEMA)


async def test_tools_and_output_together_offer_both_and_require_a_call(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    server.reply(
        anthropic_message(anthropic_tool_use("t1", "get_weather", {"city": "Rome"})),
        anthropic_message(anthropic_tool_use("t2", "Plan", {"goal": "g", "steps": []})),
    )
    first = await model.chat([Message.user("q")], tools=[WEATHER], output=Plan)
    assert first.parsed is None
    assert first.stop_reason == "tool_calls"
    assert [c.name for c in first.message.tool_calls] == ["get_weather"]
    second = await model.chat([Message.user("q")], tools=[WEATHER], output=Plan)
    assert second.parsed == Plan(goal="g", steps=[])
    assert second.stop_reason == "stop"
    assert server.last["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in server.last["tools"]] == ["get_weather", "Plan"]


@pytest.mark.parametrize("tool_input", ['{"city": "Paris"', ["Paris"]])
async def test_a_tool_input_that_is_not_an_object_is_a_model_error(
    model: AnthropicModel, server: ProtocolServer, tool_input: object
) -> None:
    server.reply(anthropic_message(anthropic_tool_use("t1", "get_weather", tool_input)))
    with pytest.raises(ModelError, match="call to tool 'get_weather' is not a JSON object") as err:
        await model.chat([Message.user("x")], tools=[WEATHER])
    assert repr(tool_input) in str(err.value)


async def test_max_tokens_stop_reason(model: AnthropicModel, server: ProtocolServer) -> None:
    server.reply(anthropic_message(anthropic_text("Once upon a"), stop_reason="max_tokens"))
    reply = await model.chat([Message.user("Tell a story")], max_tokens=3)
    assert reply.stop_reason == "max_tokens"
    assert server.last["max_tokens"] == 3


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (529, True), (400, False), (401, False)]
)
async def test_http_errors_map_to_model_errors(
    model: AnthropicModel, server: ProtocolServer, status: int, retryable: bool
) -> None:
    server.reply(anthropic_error(status, f"problem {status}"))
    with pytest.raises(ModelError, match=rf"HTTP {status}: \w+_error: problem {status}") as caught:
        await model.chat([Message.user("hi")])
    assert caught.value.retryable is retryable
    assert "anthropic:claude-3-5-haiku-latest at http://127.0.0.1:" in str(caught.value)
    assert len(server.requests) == 1


async def test_a_timeout_is_retryable(server: ProtocolServer) -> None:
    slow = AnthropicModel(
        "claude-3-5-haiku-latest", api_key="k", base_url=server.url, max_retries=0, timeout=0.2
    )
    server.reply(Reply(hang=True))
    with pytest.raises(ModelError, match="timed out") as caught:
        await slow.chat([Message.user("hi")])
    await slow.client.close()
    assert caught.value.retryable


async def test_an_unreachable_server_is_retryable(server: ProtocolServer) -> None:
    url = server.url
    server.stop()
    gone = AnthropicModel("claude-3-5-haiku-latest", api_key="k", base_url=url, max_retries=0)
    with pytest.raises(ModelError, match="could not connect") as caught:
        await gone.chat([Message.user("hi")])
    await gone.client.close()
    assert caught.value.retryable


async def test_bad_input_is_refused_before_any_request(
    model: AnthropicModel, server: ProtocolServer
) -> None:
    with pytest.raises(ValueError, match="at least one non-system message"):
        await model.chat([Message.system("only a system prompt")])
    with pytest.raises(ValueError, match="must describe an object"):
        await model.chat([Message.user("x")], output={"type": "array"})
    with pytest.raises(ValueError, match="a tool is named 'get_weather' like the output"):
        await model.chat(
            [Message.user("x")], tools=[WEATHER], output={"title": "get_weather", "type": "object"}
        )
    assert server.requests == []
