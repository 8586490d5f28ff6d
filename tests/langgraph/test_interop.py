"""A compiled LangGraph graph as a step of a Cadenza workflow."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from cadenza import Engine, MemoryStore, Workflow, WorkflowStatus
from cadenza.langgraph import as_step


class Doc(TypedDict, total=False):
    text: str
    words: Annotated[list[str], operator.add]
    count: int
    summary: str


class GraphState(TypedDict):
    text: str
    words: Annotated[list[str], operator.add]
    count: int


def _langgraph_counter() -> Any:
    g = StateGraph(GraphState)
    g.add_node("split", lambda s: {"words": s["text"].split()})
    g.add_node("count", lambda s: {"count": len(s["words"])})
    g.add_edge(START, "split")
    g.add_edge("split", "count")
    g.add_edge("count", END)
    return g.compile()


async def test_a_langgraph_graph_runs_as_a_step() -> None:
    wf = Workflow("docs", state=Doc)
    wf.task(as_step(_langgraph_counter(), name="analyse"))

    @wf.step
    def summarise(state: Doc) -> Doc:
        return {"summary": f"{state['count']} words: {' '.join(state['words'])}"}

    wf.chain("analyse", "summarise")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"text": "to be or not"})
    assert result.status is WorkflowStatus.COMPLETED, result.error
    assert result.state["count"] == 4
    assert result.state["words"] == ["to", "be", "or", "not"]
    assert result.state["summary"].startswith("4 words")


async def test_outputs_select_the_update_and_facade_graphs_work_too() -> None:
    from cadenza.langgraph.graph import START as FSTART
    from cadenza.langgraph.graph import StateGraph as FacadeGraph

    g = FacadeGraph(GraphState)
    g.add_node("count", lambda s: {"count": len(s["text"])})
    g.add_edge(FSTART, "count")
    wf = Workflow("facade", state=Doc)
    wf.task(as_step(g.compile(), name="measure", outputs=["count"]))
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"text": "abc"})
    assert result.status is WorkflowStatus.COMPLETED, result.error
    assert result.state == {"text": "abc", "count": 3}


async def test_an_interrupt_fails_the_step_with_a_reason() -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import interrupt

    g = StateGraph(GraphState)
    g.add_node("ask", lambda s: {"count": interrupt("how many?")})
    g.add_edge(START, "ask")
    wf = Workflow("asks", state=Doc)
    wf.task(as_step(g.compile(checkpointer=InMemorySaver()), name="ask_graph"))
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"text": "x"})
    assert result.status is WorkflowStatus.FAILED
    assert "stopped at an interrupt" in str(result.error)


def test_a_non_graph_is_refused() -> None:
    from cadenza import DefinitionError

    with pytest.raises(DefinitionError, match="needs a compiled graph"):
        as_step(lambda s: s)
