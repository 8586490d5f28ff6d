"""load_model: specs, environment, pricing, and that the model built talks to the right place."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cadenza.agents.anthropic_model import AnthropicModel
from cadenza.agents.config import ModelConfigError, known_providers, load_model, price_of
from cadenza.agents.model import ChatModel, Message, Pricing
from cadenza.agents.openai_model import OpenAIModel
from tests.agents.protocol_servers import (
    ProtocolServer,
    anthropic_message,
    anthropic_server,
    anthropic_text,
    openai_completion,
    openai_server,
)
from tests.probes import needs

_VARIABLES = (
    "CADENZA_MODEL",
    "CADENZA_MODEL_PRICING",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_BASE_URL",
    "VLLM_BASE_URL",
    "LMSTUDIO_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def openai() -> Iterator[ProtocolServer]:
    with openai_server() as s:
        yield s


async def _ask(model: ChatModel) -> str:
    reply = await model.chat([Message.user("hi")], max_tokens=5)
    client = getattr(model, "client", None)
    if client is not None:
        await client.close()
    return reply.message.content


async def test_openai_spec_uses_the_key_and_address_from_the_environment(
    openai: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{openai.url}/v1")
    model = load_model("openai:gpt-4o-mini", max_retries=0)
    assert isinstance(model, OpenAIModel)
    assert model.name == "openai:gpt-4o-mini"
    assert model.pricing == Pricing(input_per_million=0.15, output_per_million=0.60)
    openai.reply(openai_completion("hello"))
    assert await _ask(model) == "hello"
    assert openai.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert openai.last["model"] == "gpt-4o-mini"
    assert openai.last["max_completion_tokens"] == 5


async def test_explicit_settings_win_over_the_environment(
    openai: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    price = Pricing(input_per_million=1, output_per_million=2)
    model = load_model(
        "openai:my-finetune",
        api_key="sk-given",
        base_url=f"{openai.url}/v1",
        pricing=price,
        name="tuned",
        max_retries=0,
    )
    assert (model.name, model.pricing) == ("tuned", price)
    openai.reply(openai_completion("ok"))
    assert await _ask(model) == "ok"
    assert openai.requests[0].headers["authorization"] == "Bearer sk-given"


@needs("anthropic", "llm")
async def test_cadenza_model_names_the_model_when_no_spec_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with anthropic_server() as server:
        monkeypatch.setenv("CADENZA_MODEL", "anthropic:claude-3-5-haiku-latest")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        model = load_model(max_retries=0)
        assert isinstance(model, AnthropicModel)
        assert model.name == "anthropic:claude-3-5-haiku-latest"
        assert model.pricing == Pricing(input_per_million=0.80, output_per_million=4.00)
        server.reply(anthropic_message(anthropic_text("hej")))
        assert await _ask(model) == "hej"
        sent = server.requests[0]
        key = sent.headers.get("x-api-key") or sent.headers.get("authorization", "")
        assert key.removeprefix("Bearer ") == "sk-ant-env"
        assert sent.body["model"] == "claude-3-5-haiku-latest"


@pytest.mark.parametrize(
    ("spec", "address", "key"),
    [
        ("ollama:llama3.2:3b", "http://localhost:11434/v1/", "ollama"),
        ("vllm:Qwen/Qwen2.5-7B-Instruct", "http://localhost:8000/v1/", "EMPTY"),
        ("lmstudio:qwen2.5-7b-instruct", "http://localhost:1234/v1/", "lm-studio"),
    ],
)
def test_local_servers_have_their_usual_addresses(spec: str, address: str, key: str) -> None:
    model = load_model(spec)
    assert isinstance(model, OpenAIModel)
    assert model.name == spec
    assert model.model == spec.partition(":")[2]
    assert str(model.client.base_url) == address
    assert model.client.api_key == key
    assert model.pricing is None
    assert model.max_tokens_param == "max_tokens"


async def test_a_local_server_address_can_come_from_the_environment(
    openai: ProtocolServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", f"{openai.url}/v1")
    model = load_model("ollama:llama3.2:3b", max_retries=0)
    openai.reply(openai_completion("local", model="llama3.2:3b"))
    assert await _ask(model) == "local"
    assert openai.last["model"] == "llama3.2:3b"
    assert openai.last["max_tokens"] == 5


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o", (2.50, 10.00)),
        ("gpt-4o-2024-08-06", (2.50, 10.00)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.60)),
        ("gpt-4.1-nano", (0.10, 0.40)),
        ("o3-mini", (1.10, 4.40)),
        ("claude-3-5-haiku-latest", (0.80, 4.00)),
        ("claude-sonnet-4-5-20250929", (3.00, 15.00)),
        ("claude-opus-4-1-20250805", (15.00, 75.00)),
    ],
)
def test_built_in_prices_match_model_families(model: str, price: tuple[float, float]) -> None:
    assert price_of(model) == Pricing(input_per_million=price[0], output_per_million=price[1])


@pytest.mark.parametrize("model", ["gpt-4o2", "gpt-5.1-codex", "llama3.2", "claude"])
def test_unknown_models_have_no_price(model: str) -> None:
    assert price_of(model) is None


def test_pricing_from_the_environment_overrides_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CADENZA_MODEL_PRICING", " 0.5 , 1.5 ")
    model = load_model("openai:gpt-4o", api_key="k")
    assert model.pricing == Pricing(input_per_million=0.5, output_per_million=1.5)
    local = load_model("ollama:llama3.2")
    assert local.pricing == Pricing(input_per_million=0.5, output_per_million=1.5)


@pytest.mark.parametrize("raw", ["1", "1,2,3", "cheap,free", "-1,2"])
def test_malformed_pricing_is_a_clear_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_MODEL_PRICING", raw)
    with pytest.raises(ModelConfigError, match="CADENZA_MODEL_PRICING="):
        load_model("openai:gpt-4o", api_key="k")


def test_an_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ModelConfigError, match="unknown provider 'gemini'") as caught:
        load_model("gemini:gemini-2.0-flash")
    for provider in ("anthropic", "lmstudio", "ollama", "openai", "scripted", "vllm"):
        assert provider in str(caught.value)
    assert known_providers() == sorted(known_providers())


@pytest.mark.parametrize("spec", ["gpt-4o", "openai:", ":gpt-4o", "  "])
def test_a_malformed_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ModelConfigError, match="is not 'provider:model'"):
        load_model(spec)


def test_no_spec_and_no_cadenza_model_is_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match=r"no model given.*CADENZA_MODEL"):
        load_model()


def test_a_bad_cadenza_model_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_MODEL", "nope")
    with pytest.raises(ModelConfigError, match="CADENZA_MODEL 'nope' is not 'provider:model'"):
        load_model()


def test_a_chat_model_is_returned_as_it_is() -> None:
    model = OpenAIModel("gpt-4o", api_key="k")
    assert load_model(model) is model
    with pytest.raises(ModelConfigError, match="cannot apply to an already built model"):
        load_model(model, temperature=0)
    with pytest.raises(ModelConfigError, match="not int"):
        load_model(42)  # type: ignore[arg-type]


async def test_scripted_spec_loads_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["first answer", {"content": "second answer"}]))
    model = load_model(f"scripted:{script}")
    assert model.name == "scripted:replies"
    assert await _ask(model) == "first answer"
    assert await _ask(model) == "second answer"
