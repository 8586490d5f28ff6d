"""Agents: the model protocol, tools, a scripted model for tests and offline runs, and what a
run's model calls consumed. Vendor adapters live in their own modules and import their SDKs
only when used."""

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
