"""Cases: conditional edges in every form, ``Send`` fan-out, ``Command`` routing, the
recursion limit, config and stream writers, retries."""

import operator
from typing import Annotated, Any, Literal, TypedDict

from tests.langgraph.harness import Case, invocation


class Route(TypedDict):
    n: int
    path: Annotated[list[str], operator.add]


def _step(name: str, inc: int = 0) -> Any:
    def node(s: Route) -> dict[str, Any]:
        return {"n": s["n"] + inc, "path": [name]}

    node.__name__ = name
    return node


def _graph(lib: Any, *names: str) -> Any:
    g = lib.graph.StateGraph(Route)
    for name in names:
        g.add_node(name, _step(name, 1))
    return g


def by_name(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "start", "small", "big")
    g.add_edge(lib.graph.START, "start")
    g.add_conditional_edges("start", lambda s: "big" if s["n"] > 5 else "small")
    return g.compile(checkpointer=saver)


def path_map_dict(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "start", "small", "big")
    g.add_edge(lib.graph.START, "start")
    g.add_conditional_edges(
        "start",
        lambda s: s["n"] > 5,
        {True: "big", False: "small"},
    )
    g.add_edge("small", lib.graph.END)
    return g.compile(checkpointer=saver)


def path_map_list(lib: Any, saver: Any) -> Any:
    def pick(s: Route) -> str:
        return "odd" if s["n"] % 2 else "even"

    g = _graph(lib, "start", "odd", "even")
    g.add_edge(lib.graph.START, "start")
    g.add_conditional_edges("start", pick, ["odd", "even"])
    return g.compile(checkpointer=saver)


def path_list(lib: Any, saver: Any) -> Any:
    """The path returns several nodes: they run together in the next step."""
    g = _graph(lib, "start", "x", "y", "z")
    g.add_edge(lib.graph.START, "start")
    g.add_conditional_edges("start", lambda s: ["z", "x"])
    return g.compile(checkpointer=saver)


def loop_to_end(lib: Any, saver: Any) -> Any:
    def again(s: Route) -> Literal["work", "__end__"]:
        return "work" if s["n"] < 4 else lib.graph.END

    g = _graph(lib, "work")
    g.add_edge(lib.graph.START, "work")
    g.add_conditional_edges("work", again)
    return g.compile(checkpointer=saver)


def literal_routes(lib: Any, saver: Any) -> Any:
    def route(s: Route) -> Literal["left", "right"]:
        return "left" if s["n"] < 3 else "right"

    g = _graph(lib, "start", "left", "right")
    g.add_edge(lib.graph.START, "start")
    g.add_conditional_edges("start", route)
    return g.compile(checkpointer=saver)


def conditional_entry(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "low", "high")
    g.set_conditional_entry_point(lambda s: "high" if s["n"] > 0 else "low", ["low", "high"])
    return g.compile(checkpointer=saver)


def branch_sees_own_writes(lib: Any, saver: Any) -> Any:
    """The path function reads the state with its node's writes applied, plus the keys the
    node returned that are not state keys."""

    def node(s: Route) -> dict[str, Any]:
        return {"n": 10, "path": ["node"], "hint": "go"}

    def route(s: dict[str, Any]) -> str:
        return "done" if s["n"] == 10 and s.get("hint") == "go" else "other"

    g = lib.graph.StateGraph(Route)
    g.add_node("node", node)
    g.add_node("done", _step("done"))
    g.add_node("other", _step("other"))
    g.add_edge(lib.graph.START, "node")
    g.add_conditional_edges("node", route)
    return g.compile(checkpointer=saver)


def branch_returns_none(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "a")
    g.add_edge(lib.graph.START, "a")
    g.add_conditional_edges("a", lambda s: None)
    return g.compile(checkpointer=saver)


class MapState(TypedDict):
    topics: list[str]
    results: Annotated[list[str], operator.add]
    summary: str


def map_reduce(lib: Any, saver: Any) -> Any:
    def fan(s: MapState) -> list[Any]:
        return [lib.types.Send("write", {"topic": t}) for t in s["topics"]]

    def write(arg: dict[str, Any]) -> dict[str, Any]:
        return {"results": [arg["topic"].upper()]}

    def reduce(s: MapState) -> dict[str, Any]:
        return {"summary": ",".join(s["results"])}

    g = lib.graph.StateGraph(MapState)
    g.add_node("plan", lambda s: {"topics": [*s["topics"], "extra"]})
    g.add_node("write", write)
    g.add_node("reduce", reduce)
    g.add_edge(lib.graph.START, "plan")
    g.add_conditional_edges("plan", fan, ["write"])
    g.add_edge("write", "reduce")
    return g.compile(checkpointer=saver)


def send_from_start(lib: Any, saver: Any) -> Any:
    def fan(s: MapState) -> list[Any]:
        return [lib.types.Send("write", {"topic": t, "idx": i}) for i, t in enumerate(s["topics"])]

    def write(arg: dict[str, Any]) -> dict[str, Any]:
        return {"results": [f"{arg['idx']}:{arg['topic']}"]}

    g = lib.graph.StateGraph(MapState)
    g.add_node("write", write)
    g.add_conditional_edges(lib.graph.START, fan)
    return g.compile(checkpointer=saver)


def send_to_end(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(MapState)
    g.add_node("write", lambda s: {})
    g.add_conditional_edges(lib.graph.START, lambda s: [lib.types.Send(lib.graph.END, {})])
    return g.compile(checkpointer=saver)


def command_goto(lib: Any, saver: Any) -> Any:
    def decide(s: Route) -> Any:
        target = "yes" if s["n"] > 0 else "no"
        return lib.types.Command(update={"n": s["n"] * 100, "path": ["decide"]}, goto=target)

    g = _graph(lib, "yes", "no")
    g.add_node("decide", decide, destinations=("yes", "no"))
    g.add_edge(lib.graph.START, "decide")
    return g.compile(checkpointer=saver)


def command_goto_many(lib: Any, saver: Any) -> Any:
    def decide(s: Route) -> Any:
        return lib.types.Command(
            update={"path": ["decide"]},
            goto=["b", lib.types.Send("a", {"n": 7, "path": []}), "c"],
        )

    g = _graph(lib, "a", "b", "c")
    g.add_node("decide", decide)
    g.add_edge(lib.graph.START, "decide")
    return g.compile(checkpointer=saver)


def command_typed(lib: Any, saver: Any) -> Any:
    def hop(s: Route) -> lib.types.Command[Literal["target", "__end__"]]:  # type: ignore[name-defined]
        if s["n"] >= 2:
            return lib.types.Command(goto=lib.graph.END)
        return lib.types.Command(update={"n": s["n"] + 1}, goto="target")

    g = lib.graph.StateGraph(Route)
    g.add_node("hop", hop)
    g.add_node("target", _step("target"))
    g.add_edge(lib.graph.START, "hop")
    g.add_edge("target", "hop")
    return g.compile(checkpointer=saver)


def command_list_return(lib: Any, saver: Any) -> Any:
    def both(s: Route) -> Any:
        return [
            lib.types.Command(update={"path": ["one"]}),
            lib.types.Command(update={"path": ["two"]}, goto="tail"),
        ]

    g = _graph(lib, "tail")
    g.add_node("both", both)
    g.add_edge(lib.graph.START, "both")
    return g.compile(checkpointer=saver)


def forever(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "spin")
    g.add_edge(lib.graph.START, "spin")
    g.add_edge("spin", "spin")
    return g.compile(checkpointer=saver)


def just_enough(lib: Any, saver: Any) -> Any:
    g = _graph(lib, "a", "b", "c")
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    return g.compile(checkpointer=saver)


def empty_input(lib: Any, saver: Any) -> Any:
    return just_enough(lib, saver)


CASES = [
    Case("by_name_small", by_name, [invocation({"n": 1})], checkpointer=True),
    Case("by_name_big", by_name, [invocation({"n": 9})]),
    Case("path_map_dict", path_map_dict, [invocation({"n": 2})], checkpointer=True),
    Case("path_map_list", path_map_list, [invocation({"n": 3})]),
    Case("path_list", path_list, [invocation({"n": 0})], checkpointer=True),
    Case("loop_to_end", loop_to_end, [invocation({"n": 0})], checkpointer=True),
    Case("literal_routes", literal_routes, [invocation({"n": 5})]),
    Case("conditional_entry", conditional_entry, [invocation({"n": 1})], checkpointer=True),
    Case("branch_sees_own_writes", branch_sees_own_writes, [invocation({"n": 0})]),
    Case("branch_returns_none", branch_returns_none, [invocation({"n": 0})]),
    Case("map_reduce", map_reduce, [invocation({"topics": ["a", "b", "c"]})], checkpointer=True),
    Case("send_from_start", send_from_start, [invocation({"topics": ["x", "y"]})]),
    Case("send_to_end", send_to_end, [invocation({"topics": []})]),
    Case("command_goto", command_goto, [invocation({"n": 2})], checkpointer=True),
    Case("command_goto_many", command_goto_many, [invocation({"n": 0})], checkpointer=True),
    Case("command_typed", command_typed, [invocation({"n": 0})], checkpointer=True),
    Case("command_list_return", command_list_return, [invocation({"n": 0})]),
    Case("recursion_limit", forever, [invocation({"n": 0})], config={"recursion_limit": 4}),
    Case(
        "recursion_limit_saved",
        forever,
        [invocation({"n": 0})],
        checkpointer=True,
        config={"recursion_limit": 3},
    ),
    Case(
        "recursion_just_enough", just_enough, [invocation({"n": 0})], config={"recursion_limit": 3}
    ),
    Case("recursion_one_short", just_enough, [invocation({"n": 0})], config={"recursion_limit": 2}),
    Case("empty_input", empty_input, [invocation(None)]),
]
