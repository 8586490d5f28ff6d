"""LangChainModel around a real LangChain chat model (``langchain_openai.ChatOpenAI``) talking
to a local chat-completions server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from cadenza.agents.langchain_model import (
    LangChainModel,
    from_langchain_message,
    to_langchain_message,
)
from cadenza.agents.model import ChatModel, Message, ModelError, ToolCall, ToolSpec, Usage
from tests.agents.protocol_servers import (
    ProtocolServer,
    openai_completion,
    openai_error,
    openai_server,
    openai_tool_call,
)
from tests.probes import needs

langchain_openai = pytest.importorskip("langchain_openai")
messages = pytest.importorskip("langchain_core.messages")

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
LABEL_SCHEMA = {
    "title": "label",
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
}


class Verdict(BaseModel):
    claim: str
    holds: bool


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with openai_server() as s:
        yield s


@pytest.fixture
def model(server: ProtocolServer) -> LangChainModel:
    chat = langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0
    )
    return LangChainModel(chat)


async def test_plain_text_reply(model: LangChainModel, server: ProtocolServer) -> None:
    server.reply(openai_completion("Paris.", prompt_tokens=12, completion_tokens=2))
    reply = await model.chat(
        [Message.system("Be terse."), Message.user("Capital of France?")],
        temperature=0.3,
        max_tokens=20,
    )
    assert isinstance(model, ChatModel)
    assert model.name == "langchain:gpt-4o-mini"
    assert reply.message == Message.assistant("Paris.")
    assert reply.usage == Usage(input_tokens=12, output_tokens=2)
    assert reply.stop_reason == "stop"
    assert reply.model == "gpt-4o-mini-2024-07-18"
    assert server.last["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert server.last["temperature"] == 0.3
    assert server.last["max_completion_tokens"] == 20
    assert model.model.temperature is None  # type: ignore[attr-defined]


async def test_several_tool_calls_through_bind_tools(
    model: LangChainModel, server: ProtocolServer
) -> None:
    server.reply(
        openai_completion(
            tool_calls=[
                openai_tool_call("call_a", "get_weather", {"city": "Paris"}),
                openai_tool_call("call_b", "get_weather", {"city": "Oslo"}),
            ]
        )
    )
    reply = await model.chat([Message.user("Paris and Oslo?")], tools=[WEATHER])
    assert reply.stop_reason == "tool_calls"
    assert reply.message.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert server.last["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]


async def test_tool_results_are_sent_back_paired(
    model: LangChainModel, server: ProtocolServer
) -> None:
    paris = ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"})
    oslo = ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"})
    server.reply(openai_completion("Paris 18C, Oslo 9C."))
    await model.chat(
        [
            Message.user("Weather?"),
            Message.assistant("", [paris, oslo]),
            Message.tool(paris, "18C"),
            Message.tool(oslo, "9C"),
        ],
        tools=[WEATHER],
    )
    sent = server.last["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in sent[1]["tool_calls"]] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"city": "Oslo"}),
    ]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        ("call_a", "18C"),
        ("call_b", "9C"),
    ]


async def test_structured_output_from_a_pydantic_model(
    model: LangChainModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion('{"claim": "sky is blue", "holds": true}'))
    reply = await model.chat([Message.user("Check it")], output=Verdict)
    assert reply.parsed == Verdict(claim="sky is blue", holds=True)
    assert json.loads(reply.message.content) == {"claim": "sky is blue", "holds": True}
    assert server.last["response_format"]["type"] == "json_schema"
    assert server.last["response_format"]["json_schema"]["name"] == "Verdict"


@needs("jsonschema", "llm")
async def test_structured_output_from_a_dict_schema(
    model: LangChainModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion('{"label": "spam", "score": 0.9}', completion_tokens=7))
    reply = await model.chat([Message.user("WIN NOW")], output=LABEL_SCHEMA)
    assert reply.parsed == {"label": "spam", "score": 0.9}
    assert reply.usage.output_tokens == 7
    assert server.last["response_format"]["json_schema"]["name"] == "label"


@pytest.mark.parametrize(
    ("output", "content", "expected"),
    [
        (LABEL_SCHEMA, '{"label": "eggs", "score": 1}', "does not match the output schema"),
        (LABEL_SCHEMA, "not json at all", "does not match 'label'"),
        (Verdict, '{"claim": "x", "holds": "perhaps"}', "does not match 'Verdict'.*holds"),
    ],
)
@needs("jsonschema", "llm")
async def test_a_reply_that_does_not_match_is_a_model_error(
    model: LangChainModel,
    server: ProtocolServer,
    output: type[BaseModel] | dict[str, object],
    content: str,
    expected: str,
) -> None:
    server.reply(openai_completion(content))
    with pytest.raises(ModelError, match=expected) as caught:
        await model.chat([Message.user("x")], output=output)
    assert caught.value.retryable is False


@needs("jsonschema", "llm")
async def test_tools_and_output_together(model: LangChainModel, server: ProtocolServer) -> None:
    server.reply(
        openai_completion(tool_calls=[openai_tool_call("c1", "get_weather", {"city": "Rome"})]),
        openai_completion(
            tool_calls=[openai_tool_call("c2", "label", {"label": "ham", "score": 0})]
        ),
    )
    first = await model.chat([Message.user("q")], tools=[WEATHER], output=LABEL_SCHEMA)
    assert first.parsed is None
    assert [c.name for c in first.message.tool_calls] == ["get_weather"]
    second = await model.chat([Message.user("q")], tools=[WEATHER], output=LABEL_SCHEMA)
    assert second.parsed == {"label": "ham", "score": 0}
    assert second.message.tool_calls == ()
    assert second.stop_reason == "stop"
    assert [t["function"]["name"] for t in server.last["tools"]] == ["get_weather", "label"]
    assert server.last["tool_choice"] == "required"


async def test_malformed_tool_call_arguments_are_a_model_error_with_the_raw_text(
    model: LangChainModel, server: ProtocolServer
) -> None:
    server.reply(
        openai_completion(tool_calls=[openai_tool_call("c1", "get_weather", '{"city": "Par')])
    )
    with pytest.raises(ModelError, match="call to tool 'get_weather' are not valid JSON") as caught:
        await model.chat([Message.user("x")], tools=[WEATHER])
    assert repr('{"city": "Par') in str(caught.value)


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (400, False)])
async def test_http_errors_map_to_model_errors(
    model: LangChainModel, server: ProtocolServer, status: int, retryable: bool
) -> None:
    server.reply(openai_error(status, f"problem {status}"))
    with pytest.raises(
        ModelError, match=rf"langchain:gpt-4o-mini: HTTP {status}: .*problem"
    ) as err:
        await model.chat([Message.user("hi")])
    assert err.value.retryable is retryable


def test_messages_round_trip_through_langchain() -> None:
    call = ToolCall(id="t1", name="get_weather", arguments={"city": "Rome"})
    transcript = [
        Message.system("sys"),
        Message.user("hi"),
        Message.assistant("checking", [call]),
        Message.tool(call, "20C"),
    ]
    converted = [to_langchain_message(m) for m in transcript]
    assert [type(m).__name__ for m in converted] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
    ]
    assert [from_langchain_message(m) for m in converted] == transcript


def test_block_content_and_missing_ids_from_other_providers() -> None:
    reply = messages.AIMessage(
        content=[{"type": "text", "text": "Let me "}, "look.", {"type": "thinking", "x": 1}],
        tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": None}],
    )
    converted = from_langchain_message(reply)
    assert converted.content == "Let me look."
    assert converted.tool_calls[0].name == "get_weather"
    assert converted.tool_calls[0].id.startswith("call_")
