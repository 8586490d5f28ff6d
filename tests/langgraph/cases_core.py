"""Cases: state schemas, reducers, joins, node return values and errors."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel

from tests.langgraph.harness import Case, invocation


class Counter(TypedDict):
    n: int
    log: Annotated[list[str], operator.add]


def _append(name: str) -> Any:
    def node(state: Any) -> dict[str, Any]:
        return {"log": [name]}

    node.__name__ = name
    return node


def chain(lib: Any, saver: Any) -> Any:
    def a(s: Counter) -> dict[str, Any]:
        return {"n": s["n"] + 1, "log": ["a"]}

    def b(s: Counter) -> dict[str, Any]:
        return {"n": s["n"] * 2, "log": ["b"]}

    def c(s: Counter) -> Any:
        return None

    g = lib.graph.StateGraph(Counter)
    g.add_node("a", a)
    g.add_node("b", b)
    g.add_node("c", c)
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", lib.graph.END)
    return g.compile(checkpointer=saver)


def fan_out_order(lib: Any, saver: Any) -> Any:
    """Parallel writers to a reducer key: applied in node-name order, not add order."""
    g = lib.graph.StateGraph(Counter)
    for name in ("zeta", "alpha", "mid"):
        g.add_node(name, _append(name))
        g.add_edge(lib.graph.START, name)
    return g.compile(checkpointer=saver)


def join_barrier(lib: Any, saver: Any) -> Any:
    """``d`` waits for ``b`` and for ``c2``, which is one step further away."""
    g = lib.graph.StateGraph(Counter)
    for name in ("a", "b", "c", "c2", "d"):
        g.add_node(name, _append(name))
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("a", "c")
    g.add_edge("c", "c2")
    g.add_edge(["b", "c2"], "d")
    g.add_edge("d", lib.graph.END)
    return g.compile(checkpointer=saver)


def plain_fan_in(lib: Any, saver: Any) -> Any:
    """Without a join, ``d`` runs once per step in which one of its sources ran."""
    g = lib.graph.StateGraph(Counter)
    for name in ("a", "b", "c", "c2", "d"):
        g.add_node(name, _append(name))
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("a", "c")
    g.add_edge("c", "c2")
    g.add_edge("b", "d")
    g.add_edge("c2", "d")
    return g.compile(checkpointer=saver)


@dataclass
class DataState:
    name: str
    count: int = 0
    tags: Annotated[list[str], operator.add] = field(default_factory=list)


def dataclass_state(lib: Any, saver: Any) -> Any:
    def greet(s: DataState) -> dict[str, Any]:
        assert isinstance(s, DataState)
        return {"count": s.count + 1, "tags": [f"hi {s.name}"]}

    def again(s: DataState) -> DataState:
        return DataState(name=s.name.upper(), count=s.count + 10, tags=["again"])

    g = lib.graph.StateGraph(DataState)
    g.add_node("greet", greet)
    g.add_node("again", again)
    g.add_edge(lib.graph.START, "greet")
    g.add_edge("greet", "again")
    return g.compile(checkpointer=saver)


class PydState(BaseModel):
    text: str
    score: float = 0.5
    notes: Annotated[list[str], operator.add] = []
    maybe: str | None = None


def pydantic_state(lib: Any, saver: Any) -> Any:
    def rate(s: PydState) -> dict[str, Any]:
        assert isinstance(s, PydState)
        return {"score": len(s.text) / 10, "notes": ["rated"]}

    def finish(s: PydState) -> PydState:
        return s.model_copy(update={"notes": ["finished"], "maybe": None})

    g = lib.graph.StateGraph(PydState)
    g.add_node("rate", rate)
    g.add_node("finish", finish)
    g.add_edge(lib.graph.START, "rate")
    g.add_edge("rate", "finish")
    return g.compile(checkpointer=saver)


def pydantic_invalid_input(lib: Any, saver: Any) -> Any:
    return pydantic_state(lib, saver)


class InSchema(TypedDict):
    question: str


class OutSchema(TypedDict):
    answer: str


class Overall(TypedDict):
    question: str
    scratch: str
    answer: str


class Private(TypedDict):
    secret: str


def io_schemas(lib: Any, saver: Any) -> Any:
    def think(s: InSchema) -> dict[str, Any]:
        return {"scratch": s["question"] + "?", "secret": "x"}

    def private(s: Private) -> dict[str, Any]:
        return {"scratch": "private saw " + s["secret"]}

    def answer(s: Overall) -> dict[str, Any]:
        return {"answer": s["scratch"].upper()}

    g = lib.graph.StateGraph(Overall, input_schema=InSchema, output_schema=OutSchema)
    g.add_node("think", think)
    g.add_node("private", private)
    g.add_node("answer", answer)
    g.add_edge(lib.graph.START, "think")
    g.add_edge("think", "private")
    g.add_edge("private", "answer")
    return g.compile(checkpointer=saver)


def root_state(lib: Any, saver: Any) -> Any:
    """A state that is one reducer value, not a dict of keys."""
    g = lib.graph.StateGraph(Annotated[list, operator.add])
    g.add_node("one", lambda s: [len(s)])
    g.add_node("two", lambda s: [len(s) * 10])
    g.add_edge(lib.graph.START, "one")
    g.add_edge("one", "two")
    return g.compile(checkpointer=saver)


class Plain(TypedDict):
    value: str


def last_value_conflict(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Plain)
    g.add_node("left", lambda s: {"value": "l"})
    g.add_node("right", lambda s: {"value": "r"})
    g.add_edge(lib.graph.START, "left")
    g.add_edge(lib.graph.START, "right")
    return g.compile(checkpointer=saver)


def invalid_return(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Plain)
    g.add_node("bad", lambda s: "not a dict")
    g.add_edge(lib.graph.START, "bad")
    return g.compile(checkpointer=saver)


def node_error(lib: Any, saver: Any) -> Any:
    def ok(s: Plain) -> dict[str, Any]:
        return {"value": s["value"] + "!"}

    def boom(s: Plain) -> dict[str, Any]:
        raise KeyError(f"missing {s['value']}")

    g = lib.graph.StateGraph(Plain)
    g.add_node("ok", ok)
    g.add_node("boom", boom)
    g.add_edge(lib.graph.START, "ok")
    g.add_edge("ok", "boom")
    return g.compile(checkpointer=saver)


def overwrite(lib: Any, saver: Any) -> Any:
    def reset(s: Counter) -> dict[str, Any]:
        return {"log": lib.types.Overwrite(["reset"])}

    g = lib.graph.StateGraph(Counter)
    g.add_node("first", _append("first"))
    g.add_node("reset", reset)
    g.add_node("after", _append("after"))
    g.add_edge(lib.graph.START, "first")
    g.add_edge("first", "reset")
    g.add_edge("reset", "after")
    return g.compile(checkpointer=saver)


def sequence(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Counter)
    g.add_sequence([_append("s1"), ("second", _append("s2")), _append("s3")])
    g.set_entry_point("s1")
    g.set_finish_point("s3")
    return g.compile(checkpointer=saver)


def deferred(lib: Any, saver: Any) -> Any:
    """A ``defer=True`` node runs once, after every other branch has finished."""
    g = lib.graph.StateGraph(Counter)
    for name in ("a", "b", "b2", "b3", "final"):
        g.add_node(name, _append(name), defer=name == "final")
    g.add_edge(lib.graph.START, "a")
    g.add_edge(lib.graph.START, "b")
    g.add_edge("b", "b2")
    g.add_edge("b2", "b3")
    g.add_edge("a", "final")
    g.add_edge("b3", "final")
    return g.compile(checkpointer=saver)


def build_errors(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Plain)
    g.add_node("a", lambda s: {})
    g.add_edge("a", "nowhere")
    return g.compile(checkpointer=saver)


def no_entry(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Plain)
    g.add_node("a", lambda s: {})
    return g.compile(checkpointer=saver)


def managed_steps(lib: Any, saver: Any) -> Any:
    S = TypedDict(  # noqa: UP013 - the class form cannot name lib in a local annotation
        "S", {"seen": Annotated[list[int], operator.add], "remaining": lib.managed.RemainingSteps}
    )

    def look(s: Any) -> dict[str, Any]:
        return {"seen": [s["remaining"]]}

    g = lib.graph.StateGraph(S)
    g.add_node("look", look)
    g.add_edge(lib.graph.START, "look")
    g.add_conditional_edges("look", lambda s: "look" if len(s["seen"]) < 3 else lib.graph.END)
    return g.compile(checkpointer=saver)


CASES = [
    Case("chain", chain, [invocation({"n": 1, "log": []})]),
    Case("chain_saved", chain, [invocation({"n": 1})], checkpointer=True),
    Case(
        "fan_out_order", fan_out_order, [invocation({"n": 0, "log": ["start"]})], checkpointer=True
    ),
    Case("join_barrier", join_barrier, [invocation({"n": 0})], checkpointer=True),
    Case("plain_fan_in", plain_fan_in, [invocation({"n": 0})]),
    Case("dataclass_state", dataclass_state, [invocation({"name": "ada"})], checkpointer=True),
    Case(
        "pydantic_state", pydantic_state, [invocation({"text": "hello world"})], checkpointer=True
    ),
    Case(
        "pydantic_invalid_input",
        pydantic_invalid_input,
        [invocation({"text": 123})],
        compare_messages=False,
    ),
    Case("io_schemas", io_schemas, [invocation({"question": "why"})], checkpointer=True),
    Case("root_state", root_state, [invocation([1, 2])], checkpointer=True),
    Case(
        "last_value_conflict", last_value_conflict, [invocation({"value": "x"})], checkpointer=True
    ),
    Case("invalid_return", invalid_return, [invocation({"value": "x"})]),
    Case("node_error", node_error, [invocation({"value": "x"})], checkpointer=True),
    Case("overwrite", overwrite, [invocation({"n": 0, "log": ["input"]})]),
    Case("sequence", sequence, [invocation({"n": 0})], checkpointer=True),
    Case("deferred", deferred, [invocation({"n": 0})], checkpointer=True),
    Case("build_unknown_target", build_errors, [invocation({"value": "x"})]),
    Case("build_no_entry", no_entry, [invocation({"value": "x"})]),
    Case(
        "managed_steps",
        managed_steps,
        [invocation({"seen": []})],
        config={"recursion_limit": 7},
    ),
]
