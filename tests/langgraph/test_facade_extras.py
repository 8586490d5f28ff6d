"""What the differential suite cannot compare: facade-only behaviour and clear refusals."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from cadenza.langgraph.graph import END, START, StateGraph


class S(TypedDict):
    log: Annotated[list[str], operator.add]


def _graph() -> StateGraph[Any]:
    g = StateGraph(S)
    g.add_node("a", lambda s: {"log": ["a"]})
    g.add_node("b", lambda s: {"log": ["b"]})
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "b", ["b", END])
    return g


def test_get_graph_draws_nodes_and_edges() -> None:
    text = _graph().compile().get_graph().draw_mermaid()
    assert "__start__ --> a;" in text
    assert "a -.-> b;" in text
    assert "a -.-> __end__;" in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g.add_node("c", lambda s: {}, error_handler=lambda s: {}), "error_handler"),
        (lambda g: list(g.compile().stream({"log": []}, stream_mode="events")), "events"),
    ],
)
def test_unsupported_options_are_refused_by_name(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(_graph())


def test_checkpointer_needs_a_thread_id() -> None:
    from cadenza.langgraph.checkpoint.memory import InMemorySaver

    app = _graph().compile(checkpointer=InMemorySaver())
    with pytest.raises(ValueError, match="thread_id"):
        app.invoke({"log": []})
    with pytest.raises(ValueError, match="thread_id"):
        app.invoke({"log": []}, {"configurable": {"user": "x"}})


def test_strict_serializer_reads_back_facade_types(tmp_path: Path) -> None:
    """With LANGGRAPH_STRICT_MSGPACK the saver only revives allowed types; the facade adds
    its own (Send, Interrupt) and the state's classes, so a paused map-reduce resumes."""
    code = textwrap.dedent(
        """
        import operator
        from typing import Annotated, TypedDict
        from pydantic import BaseModel
        from langgraph.checkpoint.memory import InMemorySaver
        from cadenza.langgraph.graph import START, StateGraph
        from cadenza.langgraph.types import Command, Send, interrupt

        class Item(BaseModel):
            name: str

        class S(TypedDict):
            items: list[Item]
            out: Annotated[list[str], operator.add]

        def work(arg):
            return {"out": [arg["x"].name + ":" + interrupt("ok?")]}

        g = StateGraph(S)
        g.add_node("work", work)
        g.add_conditional_edges(START, lambda s: [Send("work", {"x": i}) for i in s["items"]])
        app = g.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "strict"}}
        app.invoke({"items": [Item(name="a")]}, config)
        print(app.invoke(Command(resume="yes"), config)["out"])
        """
    )
    env = {**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['a:yes']"
    assert "Blocked" not in out.stderr
