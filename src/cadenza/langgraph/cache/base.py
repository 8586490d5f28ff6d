"""The cache interface: LangGraph's own ``BaseCache``.

Re-exported rather than rewritten: the facade stores node writes under LangGraph's keys, so
any LangGraph cache (in memory, SQLite, Redis) serves it, and one can be shared by both."""

from langgraph.cache.base import BaseCache, FullKey, Namespace

__all__ = ("BaseCache", "FullKey", "Namespace")
