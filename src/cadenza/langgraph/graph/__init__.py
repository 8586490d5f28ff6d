"""The graph API: ``StateGraph``, ``START``, ``END`` and the chat-message helpers
(loaded on first use, as they need ``langchain-core``)."""

from typing import Any

from cadenza.langgraph._keys import END, START
from cadenza.langgraph.graph.state import StateGraph

__all__ = ("END", "START", "StateGraph", "add_messages", "MessagesState", "MessageGraph")

_MESSAGE_NAMES = ("add_messages", "MessagesState", "MessageGraph")


def __getattr__(name: str) -> Any:
    if name in _MESSAGE_NAMES:
        from cadenza.langgraph.graph import message

        return getattr(message, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
