"""The in-memory cache: LangGraph's own ``InMemoryCache``.

Re-exported rather than rewritten: it is the reference ``BaseCache``, it stores serialized
copies (so a node mutating what it returned cannot change a cached entry), and it honours
each entry's ttl."""

from langgraph.cache.memory import InMemoryCache

__all__ = ("InMemoryCache",)
