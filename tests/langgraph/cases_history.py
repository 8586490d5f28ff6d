"""Cases: time travel. A run started at a checkpoint of the thread's history replays from
there on a new branch; ``update_state`` on an old checkpoint forks it; a replayed node that
asked a question asks again."""

import operator
from typing import Annotated, Any, TypedDict

from tests.langgraph.harness import Case, invocation, norm, operation


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def abc(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Log)
    for name in ("a", "b", "c"):
        g.add_node(name, lambda s, name=name: {"log": [name]})
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    return g.compile(checkpointer=saver)


def asks(lib: Any, saver: Any) -> Any:
    def a(s: Log) -> dict[str, Any]:
        return {"log": ["a"]}

    def ask(s: Log) -> dict[str, Any]:
        return {"log": [f"answer:{lib.types.interrupt('why?')}"]}

    g = lib.graph.StateGraph(Log)
    g.add_node("a", a)
    g.add_node("ask", ask)
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "ask")
    return g.compile(checkpointer=saver)


def _at(config: dict[str, Any], app: Any, nxt: tuple[str, ...]) -> dict[str, Any]:
    """The config of the first (newest) snapshot whose next nodes are ``nxt``."""
    return next(s.config for s in app.get_state_history(config) if s.next == nxt)


def _replay(nxt: tuple[str, ...]) -> Any:
    def run(lib: Any, app: Any, config: dict[str, Any]) -> Any:
        return norm(app.invoke(None, _at(config, app, nxt), durability="sync"))

    return operation(f"replay{nxt}", run)


def _fork(nxt: tuple[str, ...], values: dict[str, Any]) -> Any:
    def run(lib: Any, app: Any, config: dict[str, Any]) -> Any:
        forked = app.update_state(_at(config, app, nxt), values)
        return norm(app.invoke(None, forked, durability="sync"))

    return operation(f"fork{nxt}", run)


def _with_config(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    bound = app.with_config({"recursion_limit": 2})
    try:
        return norm(bound.invoke({"log": []}, config, durability="sync"))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


CASES = [
    Case(
        "replay_from_checkpoint", abc, [invocation({"log": []}), _replay(("b",))], checkpointer=True
    ),
    Case(
        "fork_old_checkpoint",
        abc,
        [invocation({"log": []}), _fork(("b",), {"log": ["X"]})],
        checkpointer=True,
    ),
    Case(
        "replay_asks_again",
        asks,
        [
            invocation({"log": []}),
            invocation(lambda lib: lib.types.Command(resume="first")),
            _replay(("ask",)),
        ],
        checkpointer=True,
    ),
    Case("with_config", abc, [operation("with_config", _with_config)], checkpointer=True),
]
