"""Prebuilt parts for tool-calling agents (need ``langchain-core``)."""

from cadenza.langgraph.prebuilt.chat_agent_executor import AgentState, create_react_agent
from cadenza.langgraph.prebuilt.tool_node import (
    InjectedState,
    InjectedStore,
    ToolNode,
    ToolRuntime,
    tools_condition,
)
from cadenza.langgraph.prebuilt.tool_validator import ValidationNode

__all__ = (
    "create_react_agent",
    "AgentState",
    "ToolNode",
    "tools_condition",
    "InjectedState",
    "InjectedStore",
    "ToolRuntime",
    "ValidationNode",
)
