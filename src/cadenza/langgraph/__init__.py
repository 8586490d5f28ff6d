"""A LangGraph-compatible graph API on Cadenza.

Change ``from langgraph.X import ...`` to ``from cadenza.langgraph.X import ...``: the same
``StateGraph`` builder, the same superstep semantics (writes of a step applied together in
task order, reducers, joins, ``Send``, ``Command``, ``interrupt``), the same checkpoint
format with any LangGraph ``BaseCheckpointSaver``, run by Cadenza's own executor.

``as_step(compiled_graph)`` turns a compiled LangGraph (or facade) graph into a step of a
Cadenza workflow."""

from typing import Any

__all__ = ("as_step",)


def __getattr__(name: str) -> Any:
    if name == "as_step":
        from cadenza.langgraph.interop import as_step

        return as_step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
