"""Chat-message state: the ``add_messages`` reducer and ``MessagesState``.

Needs ``langchain-core`` (imported here, so only graphs that use messages need it)."""

from __future__ import annotations

import uuid
import warnings
from functools import partial
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import (
    AnyMessage,
    BaseMessage,
    BaseMessageChunk,
    RemoveMessage,
    convert_to_messages,
    message_chunk_to_message,
)

from cadenza.langgraph.graph.state import StateGraph

__all__ = ("add_messages", "MessagesState", "MessageGraph", "REMOVE_ALL_MESSAGES")

REMOVE_ALL_MESSAGES = "__remove_all__"
Messages = Any


def _coerce(messages: list[Any]) -> list[Any]:
    if all(
        issubclass(t, BaseMessage) and not issubclass(t, BaseMessageChunk)
        for t in set(map(type, messages))
    ):
        return messages
    return [message_chunk_to_message(m) for m in convert_to_messages(messages)]


def _merge(
    left: Messages, right: Messages, *, format: Literal["langchain-openai"] | None = None
) -> Any:
    left = _coerce(left if isinstance(left, list) else [left])
    right = _coerce(right if isinstance(right, list) else [right])
    for m in left:
        if m.id is None:
            m.id = str(uuid.uuid4())
    remove_all = None
    for idx, m in enumerate(right):
        if m.id is None:
            m.id = str(uuid.uuid4())
        if isinstance(m, RemoveMessage) and m.id == REMOVE_ALL_MESSAGES:
            remove_all = idx
    if remove_all is not None:
        return right[remove_all + 1 :]
    merged = left.copy()
    index = {m.id: i for i, m in enumerate(merged)}
    removed: set[str] = set()
    for m in right:
        if (at := index.get(m.id)) is not None:
            if isinstance(m, RemoveMessage):
                removed.add(m.id)
            else:
                removed.discard(m.id)
                merged[at] = m
        else:
            if isinstance(m, RemoveMessage):
                raise ValueError(
                    f"Attempting to delete a message with an ID that doesn't exist ('{m.id}')"
                )
            index[m.id] = len(merged)
            merged.append(m)
    if removed:
        merged = [m for m in merged if m.id not in removed]
    if format == "langchain-openai":
        from langchain_core.messages import convert_to_openai_messages

        merged = convert_to_messages(convert_to_openai_messages(merged))
    elif format:
        raise ValueError(f"Unrecognized {format=}. Expected one of 'langchain-openai', None.")
    return merged


def add_messages(left: Messages = None, right: Messages = None, **kwargs: Any) -> Any:
    """Merge two message lists: append, but a message whose id is already there replaces
    it, and ``RemoveMessage(id)`` deletes it. ``add_messages(format=...)`` returns a
    configured reducer."""
    if left is not None and right is not None:
        return _merge(left, right, **kwargs)
    if left is not None or right is not None:
        raise ValueError(
            "Must specify non-null arguments for both 'left' and 'right'. Only received: "
            f"'{'left' if left else 'right'}'."
        )
    return partial(_merge, **kwargs)


class MessagesState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class MessageGraph(StateGraph[Any]):
    """Deprecated: a graph whose whole state is one list of messages."""

    def __init__(self) -> None:
        warnings.warn(
            "MessageGraph is deprecated in LangGraph v1.0.0, to be removed in v2.0.0. Please "
            "use StateGraph with a `messages` key instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(Annotated[list[AnyMessage], add_messages])
