"""OpenAIModel through the real ``openai`` SDK against a local chat-completions server."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import BaseModel, ConfigDict

from cadenza.agents.model import ChatModel, Message, ModelError, ToolCall, ToolSpec, Usage
from cadenza.agents.openai_model import OpenAIModel
from tests.agents.protocol_servers import (
    ProtocolServer,
    Reply,
    openai_completion,
    openai_error,
    openai_server,
    openai_tool_call,
)
from tests.probes import needs

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city"],
    },
)
TIME = ToolSpec(name="get_time", parameters={"type": "object", "properties": {}})


class Verdict(BaseModel):
    """Whether a claim holds."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    holds: bool
    confidence: float


VERDICT_SCHEMA = {
    "title": "verdict",
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


@pytest.fixture
def server() -> Iterator[ProtocolServer]:
    with openai_server() as s:
        yield s


@pytest.fixture
async def model(server: ProtocolServer) -> AsyncIterator[OpenAIModel]:
    m = OpenAIModel(
        "gpt-4o-mini", api_key="sk-test", base_url=f"{server.url}/v1", max_retries=0, timeout=30
    )
    yield m
    await m.client.close()


async def test_plain_text_reply(model: OpenAIModel, server: ProtocolServer) -> None:
    server.reply(openai_completion("Paris.", prompt_tokens=21, completion_tokens=3))
    reply = await model.chat(
        [Message.system("Be terse."), Message.user("Capital of France?")],
        temperature=0.2,
        max_tokens=50,
    )
    assert isinstance(model, ChatModel)
    assert reply.message == Message.assistant("Paris.")
    assert reply.usage == Usage(input_tokens=21, output_tokens=3)
    assert reply.stop_reason == "stop"
    assert reply.model == "gpt-4o-mini-2024-07-18"
    assert reply.parsed is None
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.2,
        "max_completion_tokens": 50,
    }


async def test_several_tool_calls_in_one_reply(model: OpenAIModel, server: ProtocolServer) -> None:
    server.reply(
        openai_completion(
            tool_calls=[
                openai_tool_call("call_a1", "get_weather", {"city": "Paris", "unit": "C"}),
                openai_tool_call("call_b2", "get_weather", {"city": "Oslo"}),
                openai_tool_call("call_c3", "get_time", ""),
            ]
        )
    )
    reply = await model.chat([Message.user("Weather in Paris and Oslo?")], tools=[WEATHER, TIME])
    assert reply.stop_reason == "tool_calls"
    assert reply.message.content == ""
    assert reply.message.tool_calls == (
        ToolCall(id="call_a1", name="get_weather", arguments={"city": "Paris", "unit": "C"}),
        ToolCall(id="call_b2", name="get_weather", arguments={"city": "Oslo"}),
        ToolCall(id="call_c3", name="get_time", arguments={}),
    )
    assert server.last["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": WEATHER.parameters,
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": TIME.parameters}},
    ]
    assert "tool_choice" not in server.last


async def test_tool_results_are_sent_back_paired(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    paris = ToolCall(id="call_a1", name="get_weather", arguments={"city": "Paris"})
    oslo = ToolCall(id="call_b2", name="get_weather", arguments={"city": "Oslo"})
    server.reply(openai_completion("Paris 18C, Oslo 9C."))
    reply = await model.chat(
        [
            Message.user("Weather?"),
            Message.assistant("Checking.", [paris, oslo]),
            Message.tool(paris, "18C"),
            Message.tool(oslo, "9C"),
        ],
        tools=[WEATHER],
    )
    assert reply.message.content == "Paris 18C, Oslo 9C."
    assert server.last["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b2", "content": "9C"},
    ]


async def test_assistant_tool_calls_without_text_send_null_content(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    call = ToolCall(id="call_1", name="get_time")
    server.reply(openai_completion("Noon."))
    await model.chat(
        [Message.user("Time?"), Message.assistant("", [call]), Message.tool(call, "12:00")]
    )
    assert server.last["messages"][1]["content"] is None


async def test_structured_output_from_a_pydantic_model(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    answer = {"claim": "water is wet", "holds": True, "confidence": 0.9}
    server.reply(openai_completion(json.dumps(answer)))
    reply = await model.chat([Message.user("Check: water is wet")], output=Verdict)
    assert reply.parsed == Verdict(**answer)
    assert json.loads(reply.message.content) == answer
    assert server.last["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Verdict",
            "schema": Verdict.model_json_schema(),
            "strict": False,
            "description": "Whether a claim holds.",
        },
    }


@needs("jsonschema", "llm")
async def test_structured_output_from_a_dict_schema(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion('{"label": "spam", "score": 0.97}'))
    reply = await model.chat([Message.user("Win a prize!!!")], output=VERDICT_SCHEMA)
    assert reply.parsed == {"label": "spam", "score": 0.97}
    assert server.last["response_format"]["json_schema"]["name"] == "verdict"
    assert server.last["response_format"]["json_schema"]["schema"] == VERDICT_SCHEMA


async def test_strict_output_is_asked_for_when_configured(server: ProtocolServer) -> None:
    strict = OpenAIModel(
        "gpt-4o", api_key="k", base_url=f"{server.url}/v1", max_retries=0, strict_output=True
    )
    server.reply(openai_completion('{"claim": "x", "holds": false, "confidence": 0.1}'))
    await strict.chat([Message.user("x")], output=Verdict)
    await strict.client.close()
    assert server.last["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"label": "maybe", "score": 0.5}',
            r"does not match the output schema 'verdict' at label",
        ),
        ('{"label": "spam"}', r"at \(root\): 'score' is a required property"),
        ("Sure! It is spam.", r"expected a JSON reply matching 'verdict'"),
    ],
)
@needs("jsonschema", "llm")
async def test_a_reply_that_does_not_match_the_schema_is_a_model_error(
    model: OpenAIModel, server: ProtocolServer, content: str, expected: str
) -> None:
    server.reply(openai_completion(content))
    with pytest.raises(ModelError, match=expected) as caught:
        await model.chat([Message.user("classify")], output=VERDICT_SCHEMA)
    assert caught.value.retryable is False


async def test_a_reply_that_does_not_fit_the_pydantic_model_is_a_model_error(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion('{"claim": "x", "holds": "perhaps", "confidence": 0.1}'))
    with pytest.raises(ModelError, match=r"does not match Verdict: holds: Input should be"):
        await model.chat([Message.user("x")], output=Verdict)


@needs("jsonschema", "llm")
async def test_a_truncated_structured_reply_says_so(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion('{"label": "sp', finish_reason="length"))
    with pytest.raises(ModelError, match="cut off by max_tokens"):
        await model.chat([Message.user("classify")], output=VERDICT_SCHEMA, max_tokens=5)


@needs("jsonschema", "llm")
async def test_a_refusal_instead_of_structured_output_is_a_model_error(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    server.reply(openai_completion(None, refusal="I can't help with that."))
    with pytest.raises(ModelError, match="refused to answer: I can't help with that"):
        await model.chat([Message.user("classify")], output=VERDICT_SCHEMA)


@needs("jsonschema", "llm")
async def test_tools_and_output_together(model: OpenAIModel, server: ProtocolServer) -> None:
    server.reply(
        openai_completion(tool_calls=[openai_tool_call("call_1", "get_weather", {"city": "Rome"})]),
        openai_completion('{"label": "ham", "score": 0.1}'),
    )
    first = await model.chat([Message.user("q")], tools=[WEATHER], output=VERDICT_SCHEMA)
    assert first.parsed is None
    assert first.message.tool_calls[0].name == "get_weather"
    second = await model.chat([Message.user("q")], tools=[WEATHER], output=VERDICT_SCHEMA)
    assert second.parsed == {"label": "ham", "score": 0.1}
    assert {"tools", "response_format"} <= set(server.last)


@pytest.mark.parametrize("arguments", ['{"city": "Paris"', "[1, 2]", "city=Paris"])
async def test_malformed_tool_call_arguments_are_a_model_error_with_the_raw_text(
    model: OpenAIModel, server: ProtocolServer, arguments: str
) -> None:
    server.reply(openai_completion(tool_calls=[openai_tool_call("c1", "get_weather", arguments)]))
    with pytest.raises(ModelError, match="call to tool 'get_weather'") as caught:
        await model.chat([Message.user("Weather?")], tools=[WEATHER])
    assert repr(arguments) in str(caught.value)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (401, False)]
)
async def test_http_errors_map_to_model_errors(
    model: OpenAIModel, server: ProtocolServer, status: int, retryable: bool
) -> None:
    server.reply(openai_error(status, f"problem {status}", param="messages"))
    with pytest.raises(ModelError, match=rf"HTTP {status}: .*problem {status}") as caught:
        await model.chat([Message.user("hi")])
    assert caught.value.retryable is retryable
    assert "openai:gpt-4o-mini at http://127.0.0.1:" in str(caught.value)
    assert len(server.requests) == 1


async def test_rate_limit_message_names_the_error_type(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    server.reply(openai_error(429, "Rate limit reached for gpt-4o-mini on requests per min"))
    with pytest.raises(ModelError, match="HTTP 429: requests: Rate limit reached") as caught:
        await model.chat([Message.user("hi")])
    assert caught.value.retryable


async def test_an_unreachable_server_is_retryable(server: ProtocolServer) -> None:
    url = f"{server.url}/v1"
    server.stop()
    gone = OpenAIModel("gpt-4o-mini", api_key="k", base_url=url, max_retries=0)
    with pytest.raises(ModelError, match="could not connect") as caught:
        await gone.chat([Message.user("hi")])
    await gone.client.close()
    assert caught.value.retryable


async def test_a_timeout_is_retryable(server: ProtocolServer) -> None:
    slow = OpenAIModel(
        "gpt-4o-mini", api_key="k", base_url=f"{server.url}/v1", max_retries=0, timeout=0.2
    )
    server.reply(Reply(hang=True))
    with pytest.raises(ModelError, match="timed out") as caught:
        await slow.chat([Message.user("hi")])
    await slow.client.close()
    assert caught.value.retryable


async def test_sdk_retries_still_work_when_enabled(server: ProtocolServer) -> None:
    retrying = OpenAIModel("gpt-4o-mini", api_key="k", base_url=f"{server.url}/v1", max_retries=1)
    server.reply(
        Reply(
            status=500,
            body={"error": {"message": "boom", "type": "server_error"}},
            headers={"retry-after-ms": "0"},
        ),
        openai_completion("ok"),
    )
    reply = await retrying.chat([Message.user("hi")])
    await retrying.client.close()
    assert reply.message.content == "ok"
    assert len(server.requests) == 2


async def test_max_tokens_param_for_local_servers(server: ProtocolServer) -> None:
    local = OpenAIModel(
        "llama3.2",
        api_key="ollama",
        base_url=f"{server.url}/v1",
        max_retries=0,
        max_tokens_param="max_tokens",
        extra_body={"top_k": 20},
    )
    server.reply(openai_completion("hi", model="llama3.2"))
    reply = await local.chat([Message.user("hi")], max_tokens=7)
    await local.client.close()
    assert server.last["max_tokens"] == 7
    assert server.last["top_k"] == 20
    assert "max_completion_tokens" not in server.last
    assert reply.model == "llama3.2"


@needs("jsonschema", "llm")
async def test_bad_input_is_refused_before_any_request(
    model: OpenAIModel, server: ProtocolServer
) -> None:
    with pytest.raises(ValueError, match="needs at least one message"):
        await model.chat([])
    with pytest.raises(ValueError, match=r"messages\[1\]: a tool message needs tool_call_id"):
        await model.chat([Message.user("x"), Message(role="tool", content="y")])
    with pytest.raises(ValueError, match="not a valid JSON schema at type"):
        await model.chat([Message.user("x")], output={"type": "objekt"})
    with pytest.raises(TypeError, match="pydantic model class or a JSON schema dict"):
        await model.chat([Message.user("x")], output=str)  # type: ignore[arg-type]
    assert server.requests == []


def test_a_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError, match="openai:gpt-4o: cannot create the OpenAI client"):
        OpenAIModel("gpt-4o")


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(
        ImportError, match=r"OpenAIModel needs the 'openai' package.*cadenza\[llm\]"
    ):
        OpenAIModel("gpt-4o", api_key="k")
