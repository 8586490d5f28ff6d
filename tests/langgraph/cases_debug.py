"""Cases: the ``tasks``, ``checkpoints`` and ``debug`` stream modes, alone and together with
the other modes, sync and async, with and without a checkpointer, through interrupts,
errors, the recursion limit and subgraphs.

Ids (of checkpoints, tasks and interrupts), the thread id and timestamps differ between the
two sides: each id becomes ``<idN>`` in order of first appearance, so that which chunk names
which checkpoint or task is still compared; everything else is compared as it is (tuples
stay tuples)."""

import asyncio
import operator
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypedDict

from tests.langgraph.harness import Case, norm, operation

_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"
)
# chunks a step's concurrent tasks produce in the order they finish
_UNORDERED = ("updates", "custom")


class Flow(TypedDict):
    n: int
    log: Annotated[list[str], operator.add]


class Shared(TypedDict):
    text: str
    trail: Annotated[list[str], operator.add]


# ---------------------------------------------------------------------------- normalising


class _Ids:
    """Replaces ids by their order of first appearance, and the thread id by a mark."""

    def __init__(self, thread: str | None) -> None:
        self.thread = thread
        self.seen: dict[str, str] = {}

    def text(self, value: str) -> str:
        if self.thread and value == self.thread:
            return "<thread>"
        return _ID.sub(lambda m: self.seen.setdefault(m.group(), f"<id{len(self.seen)}>"), value)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                key = self(k)
                out[key] = _timestamp(v) if k == "timestamp" else self(v)
            return out
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(self(v) for v in value)
        if isinstance(value, list):
            return [self(v) for v in value]
        return norm(value)


def _timestamp(value: Any) -> str:
    """A debug event's timestamp: an ISO time in UTC, taken just now."""
    when = datetime.fromisoformat(value)
    assert when.utcoffset() == timedelta(0)
    return "<timestamp>"


def _kind(chunk: Any) -> str:
    """The mode of a chunk, ``task_result`` for a task's result in any mode."""
    mode, payload = chunk[-2], chunk[-1]
    if mode == "tasks" and isinstance(payload, dict) and "result" in payload:
        return "task_result"
    if mode == "debug" and isinstance(payload, dict) and payload.get("type") == "task_result":
        return "task_result"
    return mode


def _canonical(chunks: list[Any]) -> list[Any]:
    """Chunks in order, except runs of task results (and updates) which are sorted: a step's
    concurrent tasks finish in any order in LangGraph."""
    out: list[Any] = []
    run: list[Any] = []
    for chunk in chunks:
        if isinstance(chunk, tuple) and _kind(chunk) in ("task_result", *_UNORDERED):
            run.append(chunk)
            continue
        out.extend(sorted(run, key=repr))
        run = []
        out.append(chunk)
    out.extend(sorted(run, key=repr))
    return out


def _as_tuple(chunk: Any, modes: Any, subgraphs: bool) -> Any:
    """Every chunk as ``(ns, mode, payload)``, whatever shape the call yields."""
    if isinstance(chunk, dict) and "type" in chunk and "ns" in chunk:  # version="v2"
        return (tuple(chunk["ns"]), chunk["type"], {k: chunk[k] for k in chunk if k != "ns"})
    if isinstance(modes, list):
        return chunk if subgraphs else ((), *chunk)
    return (chunk[0], modes, chunk[1]) if subgraphs else ((), modes, chunk)


def streamed(
    input: Any,
    modes: Any,
    *,
    run_async: bool = False,
    subgraphs: bool = False,
    **kwargs: Any,
) -> Callable[[Any, Any, dict[str, Any]], Any]:
    """An operation streaming ``input`` (a value, or ``lambda lib: ...``) in ``modes``."""

    def run(lib: Any, app: Any, config: dict[str, Any]) -> Any:
        value = input(lib) if callable(input) else input
        options = dict(kwargs)
        if app.checkpointer is not None:
            options.setdefault("durability", "sync")
        chunks: list[Any] = []
        error: Any = None
        try:
            if run_async:

                async def consume() -> None:
                    async for chunk in app.astream(
                        value, config, stream_mode=modes, subgraphs=subgraphs, **options
                    ):
                        chunks.append(chunk)

                asyncio.run(consume())
            else:
                for chunk in app.stream(
                    value, config, stream_mode=modes, subgraphs=subgraphs, **options
                ):
                    chunks.append(chunk)
        except Exception as exc:
            error = ("raised", type(exc).__name__, str(exc))
        ids = _Ids(config.get("configurable", {}).get("thread_id"))
        seen = [ids(_as_tuple(c, modes, subgraphs)) for c in chunks]
        return [*_canonical(seen), error]

    return run


def _op(label: str, input: Any, modes: Any, **kwargs: Any) -> Any:
    return operation(label, streamed(input, modes, **kwargs))


# ---------------------------------------------------------------------------- graphs


def _node(name: str, inc: int = 1) -> Callable[[Flow], dict[str, Any]]:
    def node(s: Flow) -> dict[str, Any]:
        return {"n": s["n"] + inc, "log": [name]}

    return node


def chain(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    g.add_node("a", _node("a"), metadata={"role": "first"})
    g.add_node("b", _node("b", 10))
    g.add_node("c", lambda s: {"log": ["c"]})
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    return g.compile(checkpointer=saver)


def fan_out_join(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    for name in ("start", "left", "right", "join"):
        g.add_node(name, lambda s, name=name: {"log": [name]})
    g.add_edge(lib.graph.START, "start")
    g.add_edge("start", "left")
    g.add_edge("start", "right")
    g.add_edge(["left", "right"], "join")
    return g.compile(checkpointer=saver)


def send_map(lib: Any, saver: Any) -> Any:
    def fan(s: Flow) -> list[Any]:
        return [lib.types.Send("work", {"n": i, "log": []}) for i in range(1, s["n"] + 1)]

    g = lib.graph.StateGraph(Flow)
    g.add_node("plan", lambda s: {"log": ["plan"]})
    g.add_node("work", lambda s: {"log": [f"work{s['n']}"]})
    g.add_edge(lib.graph.START, "plan")
    g.add_conditional_edges("plan", fan, ["work"])
    return g.compile(checkpointer=saver)


def loop(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    g.add_node("grow", _node("grow"))
    g.add_edge(lib.graph.START, "grow")
    g.add_conditional_edges("grow", lambda s: "grow" if s["n"] < 3 else lib.graph.END)
    return g.compile(checkpointer=saver)


def asks(lib: Any, saver: Any) -> Any:
    def ask(s: Flow) -> dict[str, Any]:
        answer = lib.types.interrupt({"question": "how many?", "n": s["n"]})
        return {"n": s["n"] + answer, "log": ["ask"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("prep", _node("prep"))
    g.add_node("ask", ask)
    g.add_node("done", lambda s: {"log": ["done"]})
    g.add_edge(lib.graph.START, "prep")
    g.add_edge("prep", "ask")
    g.add_edge("ask", "done")
    return g.compile(checkpointer=saver)


def parallel_asks(lib: Any, saver: Any) -> Any:
    """One branch finishes, the other pauses: on resume only the paused one runs again."""

    def ask(s: Flow) -> dict[str, Any]:
        return {"log": [f"ask:{lib.types.interrupt('ok?')}"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("calm", lambda s: {"log": ["calm"]})
    g.add_node("ask", ask)
    g.add_edge(lib.graph.START, "calm")
    g.add_edge(lib.graph.START, "ask")
    return g.compile(checkpointer=saver)


def fails(lib: Any, saver: Any) -> Any:
    def boom(s: Flow) -> dict[str, Any]:
        raise ValueError(f"boom at {s['n']}")

    g = lib.graph.StateGraph(Flow)
    g.add_node("ok", _node("ok"))
    g.add_node("boom", boom)
    g.add_edge(lib.graph.START, "ok")
    g.add_edge("ok", "boom")
    return g.compile(checkpointer=saver)


def with_subgraph(lib: Any, saver: Any) -> Any:
    child = lib.graph.StateGraph(Shared)
    child.add_node("inner", lambda s: {"trail": [f"inner:{s['text']}"]})
    child.add_node("inner2", lambda s: {"text": s["text"].upper(), "trail": ["inner2"]})
    child.add_edge(lib.graph.START, "inner")
    child.add_edge("inner", "inner2")
    g = lib.graph.StateGraph(Shared)
    g.add_node("before", lambda s: {"trail": ["before"]})
    g.add_node("child", child.compile())
    g.add_node("after", lambda s: {"trail": [f"after:{s['text']}"]})
    g.add_edge(lib.graph.START, "before")
    g.add_edge("before", "child")
    g.add_edge("child", "after")
    return g.compile(checkpointer=saver)


def subgraph_asks(lib: Any, saver: Any) -> Any:
    def inner(s: Shared) -> dict[str, Any]:
        return {"trail": [f"inner:{lib.types.interrupt('inner?')}"]}

    child = lib.graph.StateGraph(Shared)
    child.add_node("inner", inner)
    child.add_edge(lib.graph.START, "inner")
    g = lib.graph.StateGraph(Shared)
    g.add_node("child", child.compile())
    g.add_node("after", lambda s: {"trail": ["after"]})
    g.add_edge(lib.graph.START, "child")
    g.add_edge("child", "after")
    return g.compile(checkpointer=saver)


def breakpoints(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    for name in ("a", "b", "c"):
        g.add_node(name, _node(name))
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    return g.compile(checkpointer=saver, interrupt_before=["b"], interrupt_after=["c"])


def forever(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    g.add_node("spin", _node("spin"))
    g.add_edge(lib.graph.START, "spin")
    g.add_edge("spin", "spin")
    return g.compile(checkpointer=saver)


def tagged(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Flow)
    g.add_node("a", _node("a"), metadata={"team": "blue", "level": 2})
    g.add_node("b", _node("b"))
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    return g.compile(checkpointer=saver).with_config(tags=["outer"], metadata={"run": "x"})


def single_key(lib: Any, saver: Any) -> Any:
    """A state of one value (not a dict): results and values are that value."""
    g = lib.graph.StateGraph(Annotated[list[int], operator.add])
    g.add_node("one", lambda s: [len(s)])
    g.add_node("two", lambda s: [len(s) * 10])
    g.add_edge(lib.graph.START, "one")
    g.add_edge("one", "two")
    return g.compile(checkpointer=saver)


def replay(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    """Stream again from the checkpoint before the last step (time travel: a new branch)."""
    history = list(app.get_state_history(config))
    past = history[1].config
    return streamed(None, ALL)(lib, app, {**config, "configurable": dict(past["configurable"])})


def updated(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    """Stream on from a state changed by ``update_state``."""
    app.update_state(config, {"log": ["edited"]}, as_node="a")
    return streamed(None, ALL)(lib, app, config)


def _resume(value: Any) -> Callable[[Any], Any]:
    return lambda lib: lib.types.Command(resume=value)


ALL = ["tasks", "checkpoints", "debug"]
START = {"n": 0, "log": []}

CASES = [
    Case("debug_chain_tasks", chain, [_op("tasks", START, "tasks")], only=("invoke",)),
    Case("debug_chain_debug", chain, [_op("debug", START, "debug")], only=("invoke",)),
    Case(
        "debug_chain_saved",
        chain,
        [
            _op("tasks", START, "tasks"),
            _op("checkpoints", START, "checkpoints"),
            _op("debug", START, "debug"),
            _op("all", START, [*ALL, "updates", "values"]),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_chain_saved_async",
        chain,
        [
            _op("checkpoints", START, "checkpoints", run_async=True),
            _op("debug", START, ["debug", "values"], run_async=True),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_chain_durability",
        chain,
        [
            _op("async", START, ALL, durability="async"),
            _op("exit", START, ALL, durability="exit"),
            _op("exit_async", START, "debug", durability="exit", run_async=True),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_breakpoint_update",
        breakpoints,
        [_op("before_b", START, "checkpoints"), operation("updated", updated)],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_replay",
        chain,
        [_op("first", START, "tasks"), operation("replay", replay)],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_chain_v2",
        chain,
        [_op("v2", START, ["debug", "tasks"], version="v2")],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_fan_out_join",
        fan_out_join,
        [
            _op("all", START, [*ALL, "updates", "values"]),
            _op("all_async", START, [*ALL, "updates"], run_async=True),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_fan_out_join_plain",
        fan_out_join,
        [_op("all", START, [*ALL, "updates"]), _op("async", START, "debug", run_async=True)],
        only=("invoke",),
    ),
    Case(
        "debug_send_map",
        send_map,
        [_op("all", {"n": 3, "log": []}, ALL), _op("async", {"n": 2, "log": []}, "debug")],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_send_map_plain",
        send_map,
        [_op("tasks", {"n": 3, "log": []}, "tasks")],
        only=("invoke",),
    ),
    Case(
        "debug_loop",
        loop,
        [_op("debug", START, ["debug", "values"]), _op("tasks", {"n": 1, "log": []}, "tasks")],
        checkpointer=True,
        only=("invoke",),
    ),
    Case("debug_loop_plain", loop, [_op("debug", START, "debug")], only=("invoke",)),
    Case(
        "debug_interrupt_resume",
        asks,
        [
            _op("ask", START, [*ALL, "updates", "values"]),
            _op("resume", _resume(5), [*ALL, "updates", "values"]),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_interrupt_resume_async",
        asks,
        [
            _op("ask", START, "debug", run_async=True),
            _op("resume", _resume(2), "debug", run_async=True),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_interrupt_parallel",
        parallel_asks,
        [
            _op("ask", START, ALL),
            _op("resume", _resume("yes"), ALL),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_node_error",
        fails,
        [_op("tasks", START, ["tasks", "updates"]), _op("debug", START, "debug")],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_node_error_plain",
        fails,
        [_op("all", START, ALL), _op("async", START, "tasks", run_async=True)],
        only=("invoke",),
    ),
    Case(
        "debug_subgraph",
        with_subgraph,
        [
            _op("all", {"text": "hi"}, [*ALL, "updates"], subgraphs=True),
            _op("debug", {"text": "yo"}, "debug", subgraphs=True),
            _op("hidden", {"text": "no"}, ALL),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_subgraph_async",
        with_subgraph,
        [_op("all", {"text": "hi"}, ALL, subgraphs=True, run_async=True)],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_subgraph_plain",
        with_subgraph,
        [_op("all", {"text": "hi"}, ALL, subgraphs=True)],
        only=("invoke",),
    ),
    Case(
        "debug_subgraph_interrupt",
        subgraph_asks,
        [
            _op("ask", {"text": "s"}, ALL, subgraphs=True),
            _op("resume", _resume("fine"), ALL, subgraphs=True),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_breakpoints",
        breakpoints,
        [
            _op("before_b", START, ALL),
            _op("after_c", None, ALL),
            _op("done", None, ALL),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "debug_recursion_limit",
        forever,
        [_op("debug", START, ["debug", "tasks"])],
        checkpointer=True,
        config={"recursion_limit": 3},
        only=("invoke",),
    ),
    Case(
        "debug_metadata_tags",
        tagged,
        [_op("tasks", START, "tasks"), _op("debug", START, ["debug"])],
        checkpointer=True,
        config={"configurable": {"user": "ada", "limit": 3}, "tags": ["call"]},
        only=("invoke",),
    ),
    Case(
        "debug_single_key",
        single_key,
        [_op("all", [1], [*ALL, "values"])],
        checkpointer=True,
        only=("invoke",),
    ),
]
