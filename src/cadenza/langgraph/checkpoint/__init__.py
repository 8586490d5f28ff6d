"""Checkpointers for the facade (any LangGraph ``BaseCheckpointSaver`` works too)."""
