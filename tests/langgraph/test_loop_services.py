"""What a running node reaches through the loop's services: its ``Runtime`` (as a parameter or
from ``get_runtime``), its config and the ``custom`` stream writer, where the run is."""

from __future__ import annotations

from typing import Any, TypedDict

from cadenza.langgraph.checkpoint.memory import InMemorySaver
from cadenza.langgraph.config import get_config, get_stream_writer
from cadenza.langgraph.graph import START, StateGraph
from cadenza.langgraph.runtime import Runtime, get_runtime


class State(TypedDict):
    seen: list[Any]


def _graph(checkpointer: Any = None) -> Any:
    def first(state: State, runtime: Runtime[Any]) -> dict[str, Any]:
        info = runtime.execution_info
        assert info is not None
        return {"seen": [runtime.context["user"], info.thread_id, info.checkpoint_id is not None]}

    def second(state: State) -> dict[str, Any]:
        runtime = get_runtime()
        get_stream_writer()({"step": get_config()["metadata"]["langgraph_step"]})
        return {"seen": [*state["seen"], runtime.context["user"]]}

    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("second", second)
    g.add_edge(START, "first")
    g.add_edge("first", "second")
    return g.compile(checkpointer=checkpointer)


def test_a_node_reaches_its_runtime_config_and_stream_writer() -> None:
    app = _graph(InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    chunks = list(app.stream({"seen": []}, cfg, context={"user": "ada"}, stream_mode="custom"))
    assert chunks == [{"step": 2}]
    assert app.get_state(cfg).values["seen"] == ["ada", "t", True, "ada"]


async def test_the_same_from_the_async_driver() -> None:
    out = await _graph().ainvoke({"seen": []}, context={"user": "bo"})
    assert out["seen"] == ["bo", None, True, "bo"]
