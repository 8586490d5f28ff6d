"""Pick a chat model by a short spec (``openai:gpt-4o-mini``), from code, a workflow file or
the ``CADENZA_MODEL`` environment variable.

Keys and endpoints come from the usual variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``) and are passed to the SDKs explicitly, so what
is used is what this module read. Local OpenAI-compatible servers have their own prefixes with
their usual addresses (``ollama:llama3.2``, ``vllm:...``, ``lmstudio:...``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from cadenza.agents.model import ChatModel, Pricing
from cadenza.core.errors import CadenzaError

#: US dollars per million input and output tokens, as the vendors list them; a dated model
#: name (``gpt-4o-2024-08-06``, ``claude-3-5-haiku-latest``) takes the price of its family.
#: ``CADENZA_MODEL_PRICING`` or ``pricing=`` overrides it.
PRICES: Mapping[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
}

#: OpenAI-compatible local servers: the variable that may override the address, the usual
#: address, and the placeholder key they accept.
LOCAL_SERVERS: Mapping[str, tuple[str, str, str]] = {
    "ollama": ("OLLAMA_BASE_URL", "http://localhost:11434/v1", "ollama"),
    "vllm": ("VLLM_BASE_URL", "http://localhost:8000/v1", "EMPTY"),
    "lmstudio": ("LMSTUDIO_BASE_URL", "http://localhost:1234/v1", "lm-studio"),
}


class ModelConfigError(CadenzaError, ValueError):
    """A model spec or a model setting in the environment is malformed or names nothing known."""


def load_model(spec: str | ChatModel | None = None, **kwargs: Any) -> ChatModel:
    """The chat model a spec names: ``provider:model`` (``openai:gpt-4o-mini``,
    ``anthropic:claude-3-5-haiku-latest``, ``ollama:llama3.2``, ``scripted:replies.json``), a
    ChatModel (returned as it is), or ``None`` for ``CADENZA_MODEL``. ``kwargs`` go to the
    adapter (``api_key``, ``base_url``, ``timeout``, ``max_retries``, ``pricing``...)."""
    if spec is not None and not isinstance(spec, str):
        if not isinstance(spec, ChatModel):
            raise ModelConfigError(
                f"model must be a spec string like 'openai:gpt-4o-mini' or a ChatModel, "
                f"not {type(spec).__name__}"
            )
        if kwargs:
            raise ModelConfigError(
                f"settings {sorted(kwargs)} cannot apply to an already built model {spec.name!r}"
            )
        return spec
    source = "model spec"
    if spec is None:
        spec = os.environ.get("CADENZA_MODEL", "").strip()
        source = "CADENZA_MODEL"
        if not spec:
            raise ModelConfigError(
                "no model given: pass a spec like 'openai:gpt-4o-mini' or set CADENZA_MODEL"
            )
    provider, sep, model = spec.strip().partition(":")
    provider = provider.strip().lower()
    model = model.strip()
    if not sep or not provider or not model:
        raise ModelConfigError(
            f"{source} {spec!r} is not 'provider:model' (for example 'openai:gpt-4o-mini'); "
            f"known providers: {', '.join(known_providers())}"
        )
    build = _BUILDERS.get(provider)
    if build is None:
        raise ModelConfigError(
            f"{source} {spec!r} names an unknown provider {provider!r}; "
            f"known providers: {', '.join(known_providers())}"
        )
    return build(provider, model, kwargs)


def known_providers() -> list[str]:
    return sorted(_BUILDERS)


def price_of(model: str) -> Pricing | None:
    """The built-in price of a model, by the longest family name that starts its name."""
    best = ""
    for family in PRICES:
        if (model == family or model.startswith(family + "-")) and len(family) > len(best):
            best = family
    if not best:
        return None
    price_in, price_out = PRICES[best]
    return Pricing(input_per_million=price_in, output_per_million=price_out)


def pricing_from_env(model: str, *, priced: bool = True) -> Pricing | None:
    """``CADENZA_MODEL_PRICING="in,out"`` (dollars per million tokens) if set, else the
    built-in price where ``priced``."""
    raw = os.environ.get("CADENZA_MODEL_PRICING", "").strip()
    if not raw:
        return price_of(model) if priced else None
    parts = [p.strip() for p in raw.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        price_in, price_out = float(parts[0]), float(parts[1])
    except ValueError:
        raise ModelConfigError(
            f"CADENZA_MODEL_PRICING={raw!r} is not 'input,output' in dollars per million "
            "tokens (for example '0.15,0.60')"
        ) from None
    if price_in < 0 or price_out < 0:
        raise ModelConfigError(f"CADENZA_MODEL_PRICING={raw!r} has a negative price")
    return Pricing(input_per_million=price_in, output_per_million=price_out)


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _openai(provider: str, model: str, kwargs: dict[str, Any]) -> ChatModel:
    from cadenza.agents.openai_model import OpenAIModel

    options = dict(kwargs)
    options.setdefault("api_key", _env("OPENAI_API_KEY"))
    options.setdefault("base_url", _env("OPENAI_BASE_URL"))
    if "pricing" not in options:
        options["pricing"] = pricing_from_env(model)
    return OpenAIModel(model, name=options.pop("name", f"{provider}:{model}"), **options)


def _anthropic(provider: str, model: str, kwargs: dict[str, Any]) -> ChatModel:
    from cadenza.agents.anthropic_model import AnthropicModel

    options = dict(kwargs)
    options.setdefault("api_key", _env("ANTHROPIC_API_KEY"))
    options.setdefault("base_url", _env("ANTHROPIC_BASE_URL"))
    if "pricing" not in options:
        options["pricing"] = pricing_from_env(model)
    return AnthropicModel(model, name=options.pop("name", f"{provider}:{model}"), **options)


def _local(provider: str, model: str, kwargs: dict[str, Any]) -> ChatModel:
    from cadenza.agents.openai_model import OpenAIModel

    variable, address, key = LOCAL_SERVERS[provider]
    options = dict(kwargs)
    options.setdefault("base_url", _env(variable) or address)
    options.setdefault("api_key", key)
    options.setdefault("max_tokens_param", "max_tokens")
    if "pricing" not in options:
        options["pricing"] = pricing_from_env(model, priced=False)
    return OpenAIModel(model, name=options.pop("name", f"{provider}:{model}"), **options)


def _scripted(provider: str, path: str, kwargs: dict[str, Any]) -> ChatModel:
    from cadenza.agents.scripted import ScriptedModel

    model: ChatModel = ScriptedModel.from_file(path, **kwargs)
    return model


_BUILDERS: dict[str, Callable[[str, str, dict[str, Any]], ChatModel]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "ollama": _local,
    "vllm": _local,
    "lmstudio": _local,
    "scripted": _scripted,
}
