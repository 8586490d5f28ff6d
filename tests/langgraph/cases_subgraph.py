"""Cases: compiled graphs as nodes, subgraphs called from nodes, interrupts inside a
subgraph, ``Command.PARENT``, streaming from subgraphs."""

import operator
from typing import Annotated, Any, TypedDict

from tests.langgraph.harness import Case, invocation, norm, operation, snapshot


class Shared(TypedDict):
    text: str
    trail: Annotated[list[str], operator.add]


class Child(TypedDict):
    word: str
    letters: Annotated[list[str], operator.add]


def _shared_child(lib: Any, saver: Any = None, *, ask: bool = False) -> Any:
    def inner(s: Shared) -> dict[str, Any]:
        extra = f"+{lib.types.interrupt('inner?')}" if ask else ""
        return {"trail": [f"inner:{s['text']}{extra}"]}

    g = lib.graph.StateGraph(Shared)
    g.add_node("inner", inner)
    g.add_node("inner2", lambda s: {"text": s["text"].upper(), "trail": ["inner2"]})
    g.add_edge(lib.graph.START, "inner")
    g.add_edge("inner", "inner2")
    return g.compile(checkpointer=saver)


def shared_state(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Shared)
    g.add_node("before", lambda s: {"trail": ["before"]})
    g.add_node("child", _shared_child(lib))
    g.add_node("after", lambda s: {"trail": [f"after:{s['text']}"]})
    g.add_edge(lib.graph.START, "before")
    g.add_edge("before", "child")
    g.add_edge("child", "after")
    return g.compile(checkpointer=saver)


def other_schema(lib: Any, saver: Any) -> Any:
    cg = lib.graph.StateGraph(Child)
    cg.add_node("split", lambda s: {"letters": list(s["word"])})
    cg.add_node("rev", lambda s: {"letters": ["|", *reversed(s["letters"])]})
    cg.add_edge(lib.graph.START, "split")
    cg.add_edge("split", "rev")
    child = cg.compile()

    def call_child(s: Shared) -> dict[str, Any]:
        out = child.invoke({"word": s["text"]})
        return {"trail": ["".join(out["letters"])]}

    g = lib.graph.StateGraph(Shared)
    g.add_node("call_child", call_child)
    g.add_edge(lib.graph.START, "call_child")
    return g.compile(checkpointer=saver)


def interrupt_inside(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Shared)
    g.add_node("before", lambda s: {"trail": ["before"]})
    g.add_node("child", _shared_child(lib, ask=True))
    g.add_node("after", lambda s: {"trail": ["after"]})
    g.add_edge(lib.graph.START, "before")
    g.add_edge("before", "child")
    g.add_edge("child", "after")
    return g.compile(checkpointer=saver)


def parent_command(lib: Any, saver: Any) -> Any:
    def jump(s: Shared) -> Any:
        return lib.types.Command(
            graph=lib.types.Command.PARENT, goto="rescue", update={"trail": ["jumped"]}
        )

    cg = lib.graph.StateGraph(Shared)
    cg.add_node("jump", jump)
    cg.add_edge(lib.graph.START, "jump")
    g = lib.graph.StateGraph(Shared)
    g.add_node("child", cg.compile())
    g.add_node("rescue", lambda s: {"trail": ["rescued"]})
    g.add_edge(lib.graph.START, "child")
    return g.compile(checkpointer=saver)


def grandchild(lib: Any, saver: Any) -> Any:
    g2 = lib.graph.StateGraph(Shared)
    g2.add_node("deep", lambda s: {"trail": ["deep"]})
    g2.add_edge(lib.graph.START, "deep")
    g1 = lib.graph.StateGraph(Shared)
    g1.add_node("mid", g2.compile())
    g1.add_node("mid2", lambda s: {"trail": ["mid2"]})
    g1.add_edge(lib.graph.START, "mid")
    g1.add_edge("mid", "mid2")
    g = lib.graph.StateGraph(Shared)
    g.add_node("top", g1.compile())
    g.add_edge(lib.graph.START, "top")
    return g.compile(checkpointer=saver)


def twice_in_node(lib: Any, saver: Any) -> Any:
    child = _shared_child(lib)

    def twice(s: Shared) -> dict[str, Any]:
        first = child.invoke({"text": "one"})
        second = child.invoke({"text": "two"})
        return {"trail": [first["text"], second["text"]]}

    g = lib.graph.StateGraph(Shared)
    g.add_node("twice", twice)
    g.add_edge(lib.graph.START, "twice")
    return g.compile(checkpointer=saver)


def _namespaces(ns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.split(":")[0] for part in ns)


def stream_subgraphs(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    chunks = app.stream({"text": "sub"}, config, stream_mode=["updates", "values"], subgraphs=True)
    return [(_namespaces(ns), mode, norm(payload)) for ns, mode, payload in chunks]


def subgraph_state(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    state = app.get_state(config, subgraphs=True)
    out = [snapshot(state)]
    for task in state.tasks:
        if task.state is not None:
            out.append((task.name, snapshot(task.state)))
    return out


def subgraph_state_by_config(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    state = app.get_state(config)
    return [(t.name, snapshot(app.get_state(t.state))) for t in state.tasks if t.state is not None]


CASES = [
    Case("subgraph_shared_state", shared_state, [invocation({"text": "hi"})], checkpointer=True),
    Case("subgraph_plain", shared_state, [invocation({"text": "hi"})]),
    Case("subgraph_other_schema", other_schema, [invocation({"text": "abc"})], checkpointer=True),
    Case(
        "subgraph_interrupt",
        interrupt_inside,
        [
            invocation({"text": "hi"}),
            operation("state", subgraph_state),
            operation("state_by_config", subgraph_state_by_config),
            invocation(lambda lib: lib.types.Command(resume="yes")),
        ],
        checkpointer=True,
    ),
    Case("subgraph_parent_command", parent_command, [invocation({"text": "x"})], checkpointer=True),
    Case("subgraph_grandchild", grandchild, [invocation({"text": "g"})], checkpointer=True),
    Case("subgraph_twice_in_node", twice_in_node, [invocation({"text": "t"})], checkpointer=True),
    Case(
        "subgraph_stream",
        shared_state,
        [operation("stream_subgraphs", stream_subgraphs)],
        checkpointer=True,
        only=("invoke",),
    ),
]
