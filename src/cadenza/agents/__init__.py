"""Agents: the model protocol, tools, a scripted model for tests and offline runs, and what a
run's model calls consumed. Vendor adapters live in their own modules and import their SDKs
only when used.

The names below are loaded on first use (PEP 562): importing one module of this package (the
engine needs :mod:`cadenza.agents.model`) must not import the ReAct loop, the tools machinery
and the rest with it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from cadenza.agents._react import AgentLimitExceeded
    from cadenza.agents.model import (
        ChatModel,
        Message,
        ModelError,
        ModelResponse,
        Pricing,
        ToolCall,
        ToolSpec,
        Usage,
    )
    from cadenza.agents.registry import models, register_model, resolve_model
    from cadenza.agents.scripted import ScriptedCall, ScriptedModel
    from cadenza.agents.tools import Tool, ToolOutcome, tool
    from cadenza.agents.usage import RunUsage, run_usage

#: Where each public name lives.
_EXPORTS: dict[str, str] = {
    "AgentLimitExceeded": "cadenza.agents._react",
    "ChatModel": "cadenza.agents.model",
    "Message": "cadenza.agents.model",
    "ModelError": "cadenza.agents.model",
    "ModelResponse": "cadenza.agents.model",
    "Pricing": "cadenza.agents.model",
    "ToolCall": "cadenza.agents.model",
    "ToolSpec": "cadenza.agents.model",
    "Usage": "cadenza.agents.model",
    "models": "cadenza.agents.registry",
    "register_model": "cadenza.agents.registry",
    "resolve_model": "cadenza.agents.registry",
    "ScriptedCall": "cadenza.agents.scripted",
    "ScriptedModel": "cadenza.agents.scripted",
    "Tool": "cadenza.agents.tools",
    "ToolOutcome": "cadenza.agents.tools",
    "tool": "cadenza.agents.tools",
    "RunUsage": "cadenza.agents.usage",
    "run_usage": "cadenza.agents.usage",
}


def __getattr__(name: str) -> object:
    """Import a public name on first use, and keep it here so the next use is a plain lookup."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cadenza.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    # protocol
    "ChatModel",
    "Message",
    "ModelError",
    "ModelResponse",
    "Pricing",
    "ToolCall",
    "ToolSpec",
    "Usage",
    # tools and models
    "Tool",
    "ToolOutcome",
    "tool",
    "ScriptedCall",
    "ScriptedModel",
    "models",
    "register_model",
    "resolve_model",
    # limits and accounting
    "AgentLimitExceeded",
    "RunUsage",
    "run_usage",
]
