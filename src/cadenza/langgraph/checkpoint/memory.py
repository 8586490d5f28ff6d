"""The in-memory checkpointer: LangGraph's own ``InMemorySaver``.

Re-exported rather than rewritten: it is the reference ``BaseCheckpointSaver``, it stores
serialized copies (so a node mutating state in place cannot change history), and the
executor, not the saver, is where the facade is faster."""

from langgraph.checkpoint.memory import InMemorySaver, MemorySaver, PersistentDict

__all__ = ("InMemorySaver", "MemorySaver", "PersistentDict")
