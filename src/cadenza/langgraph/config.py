"""Accessors a node uses to reach its run: the config, the stream writer and the store."""

from __future__ import annotations

from typing import Any

from cadenza.langgraph._context import current_task

__all__ = ("get_config", "get_store", "get_stream_writer")


def get_config() -> dict[str, Any]:
    """The ``RunnableConfig`` of the running node (raises outside a node)."""
    return current_task("get_config").config


def get_store() -> Any:
    """The store the graph was compiled with, or ``None``."""
    return current_task("get_store").loop.store


def get_stream_writer() -> Any:
    """A callable that sends a chunk to the ``custom`` stream (a no-op when nobody streams
    ``custom``); raises outside a node."""
    return current_task("get_config").writer
