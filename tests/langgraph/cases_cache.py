"""Cases: node caching (``add_node(cache_policy=)``, ``compile(cache=)``): a node whose input
was seen before does not run, its cached writes are applied and streamed with the cached
marker; misses on new input, ``key_func``, ttl expiry, ``Send`` fan-out, a checkpointer,
threads, ``clear_cache``/``aclear_cache``, async nodes and the graph's default policy.

Each side gets its own fresh ``InMemoryCache``. Every graph counts how often each node ran
(``app.executions``), and the scripts compare those counts too."""

from __future__ import annotations

import asyncio
import importlib
import operator
import time
from collections import Counter
from typing import Annotated, Any, TypedDict

from tests.langgraph.cases_debug import streamed
from tests.langgraph.harness import Case, Op, invocation, norm, operation, snapshot


class Flow(TypedDict):
    x: int
    tag: str
    log: Annotated[list[str], operator.add]


class Fan(TypedDict):
    items: list[int]
    out: Annotated[list[int], operator.add]


def _cache(lib: Any) -> Any:
    return importlib.import_module(f"{lib.prefix}.cache.memory").InMemoryCache()


def _counted(app: Any, executions: Counter[str]) -> Any:
    app.executions = executions
    return app


# ---------------------------------------------------------------------------- operations


def counts() -> Op:
    return operation("executions", lambda lib, app, cfg: dict(sorted(app.executions.items())))


def pause(seconds: float) -> Op:
    def run(lib: Any, app: Any, cfg: dict[str, Any]) -> None:
        time.sleep(seconds)

    return operation(f"sleep({seconds})", run)


def on_thread(thread: str, input: Any, *, is_async: bool = False) -> Op:
    """Stream ``updates`` on thread ``thread`` (not the case's own), then read its state."""

    def run(lib: Any, app: Any, cfg: dict[str, Any]) -> Any:
        config = {"configurable": {"thread_id": thread}}
        if is_async:

            async def consume() -> list[Any]:
                return [
                    c
                    async for c in app.astream(
                        input, config, stream_mode="updates", durability="sync"
                    )
                ]

            chunks = asyncio.run(consume())
        else:
            chunks = list(app.stream(input, config, stream_mode="updates", durability="sync"))
        return norm(chunks), snapshot(app.get_state(config))

    return operation(f"{'a' if is_async else ''}stream({thread})", run)


def clear(nodes: list[str] | None = None, *, is_async: bool = False) -> Op:
    def run(lib: Any, app: Any, cfg: dict[str, Any]) -> None:
        if is_async:
            asyncio.run(app.aclear_cache(nodes))
        else:
            app.clear_cache(nodes)

    return operation(f"{'a' if is_async else ''}clear_cache({nodes})", run)


def clear_without_cache() -> Op:
    def run(lib: Any, app: Any, cfg: dict[str, Any]) -> None:
        g = lib.graph.StateGraph(Flow)
        g.add_node("a", lambda s: {"x": 1})
        g.add_edge(lib.graph.START, "a")
        g.compile().clear_cache()

    return operation("clear_cache without a cache", run)


# ---------------------------------------------------------------------------- graphs


def chain(lib: Any, saver: Any, policy: Any = None) -> Any:
    """``double`` (cached) then ``note`` (not cached)."""
    executions: Counter[str] = Counter()

    def double(s: Flow) -> dict[str, Any]:
        executions["double"] += 1
        return {"x": s["x"] * 2, "log": [f"double:{s['tag']}"]}

    def note(s: Flow) -> dict[str, Any]:
        executions["note"] += 1
        return {"log": [f"note:{s['x']}"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("double", double, cache_policy=policy or lib.types.CachePolicy())
    g.add_node("note", note)
    g.add_edge(lib.graph.START, "double")
    g.add_edge("double", "note")
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


def keyed(lib: Any, saver: Any) -> Any:
    """The key is made from ``x`` alone: a different ``tag`` still hits."""
    return chain(lib, saver, lib.types.CachePolicy(key_func=lambda s: str(s["x"])))


def short_lived(lib: Any, saver: Any) -> Any:
    return chain(lib, saver, lib.types.CachePolicy(ttl=1))


def expired_at_once(lib: Any, saver: Any) -> Any:
    return chain(lib, saver, lib.types.CachePolicy(ttl=0))


def fan_out(lib: Any, saver: Any) -> Any:
    """``Send`` one cached ``square`` task per item."""
    executions: Counter[str] = Counter()

    def square(arg: dict[str, int]) -> dict[str, Any]:
        executions[f"square({arg['n']})"] += 1
        return {"out": [arg["n"] ** 2]}

    def spread(s: Fan) -> list[Any]:
        return [lib.types.Send("square", {"n": n}) for n in s["items"]]

    g = lib.graph.StateGraph(Fan)
    g.add_node("square", square, cache_policy=lib.types.CachePolicy())
    g.add_conditional_edges(lib.graph.START, spread, ["square"])
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


def defaults(lib: Any, saver: Any) -> Any:
    """Every node cached through ``set_node_defaults``; ``add`` has its own key."""
    executions: Counter[str] = Counter()

    def add(s: Flow) -> dict[str, Any]:
        executions["add"] += 1
        return {"x": s["x"] + 1, "log": ["add"]}

    def tag(s: Flow) -> dict[str, Any]:
        executions["tag"] += 1
        return {"tag": s["tag"] + "!", "log": ["tag"]}

    g = lib.graph.StateGraph(Flow)
    g.set_node_defaults(cache_policy=lib.types.CachePolicy())
    g.add_node("add", add, cache_policy=lib.types.CachePolicy(key_func=lambda s: str(s["x"])))
    g.add_node("tag", tag)
    g.add_edge(lib.graph.START, "add")
    g.add_edge("add", "tag")
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


def routed(lib: Any, saver: Any) -> Any:
    """A cached node that routes with ``Command(goto=)``: the route comes from the cache."""
    executions: Counter[str] = Counter()

    def decide(s: Flow) -> Any:
        executions["decide"] += 1
        goto = "big" if s["x"] > 5 else "small"
        return lib.types.Command(goto=goto, update={"log": [f"decide:{goto}"]})

    def big(s: Flow) -> dict[str, Any]:
        executions["big"] += 1
        return {"log": ["big"]}

    def small(s: Flow) -> dict[str, Any]:
        executions["small"] += 1
        return {"log": ["small"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node(
        "decide", decide, cache_policy=lib.types.CachePolicy(), destinations=("big", "small")
    )
    g.add_node("big", big, cache_policy=lib.types.CachePolicy())
    g.add_node("small", small)
    g.add_edge(lib.graph.START, "decide")
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


def async_nodes(lib: Any, saver: Any) -> Any:
    """Async node functions, which LangGraph files under the ``__dynamic__`` namespace."""
    executions: Counter[str] = Counter()

    async def double(s: Flow) -> dict[str, Any]:
        executions["double"] += 1
        await asyncio.sleep(0)
        return {"x": s["x"] * 2, "log": ["double"]}

    async def note(s: Flow) -> dict[str, Any]:
        executions["note"] += 1
        return {"log": [f"note:{s['x']}"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("double", double, cache_policy=lib.types.CachePolicy())
    g.add_node("note", note, cache_policy=lib.types.CachePolicy(ttl=60))
    g.add_edge(lib.graph.START, "double")
    g.add_edge("double", "note")
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


def failing(lib: Any, saver: Any) -> Any:
    """A cached node (keyed by ``x``) that fails on its first call: an error is not cached,
    the writes of the call that succeeds are."""
    executions: Counter[str] = Counter()

    def flaky(s: Flow) -> dict[str, Any]:
        executions["flaky"] += 1
        if executions["flaky"] == 1:
            raise ValueError("first call fails")
        return {"log": ["flaky"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("flaky", flaky, cache_policy=lib.types.CachePolicy(key_func=lambda s: str(s["x"])))
    g.add_edge(lib.graph.START, "flaky")
    return _counted(g.compile(checkpointer=saver, cache=_cache(lib)), executions)


ONE = {"x": 3, "tag": "one", "log": []}
TWO = {"x": 4, "tag": "two", "log": []}
ONE_RETAGGED = {"x": 3, "tag": "other", "log": []}

CASES = [
    Case("cache_hit_second_run", chain, [invocation(ONE), invocation(ONE), counts()]),
    Case(
        "cache_miss_other_input",
        chain,
        [invocation(ONE), invocation(TWO), invocation(ONE), invocation(TWO), counts()],
    ),
    Case(
        "cache_key_func",
        keyed,
        [invocation(ONE), invocation(ONE_RETAGGED), invocation(TWO), counts()],
    ),
    Case(
        "cache_ttl_expiry",
        short_lived,
        [invocation(ONE), invocation(ONE), pause(1.1), invocation(ONE), counts()],
        only=("invoke", "astream"),
    ),
    Case("cache_ttl_zero", expired_at_once, [invocation(ONE), invocation(ONE), counts()]),
    Case(
        "cache_send_fan_out",
        fan_out,
        [
            invocation({"items": [1, 2, 3], "out": []}),
            invocation({"items": [3, 4, 1], "out": []}),
            invocation({"items": [2, 2], "out": []}),
            invocation({"items": [2, 2], "out": []}),
            counts(),
        ],
    ),
    Case(
        "cache_send_fan_out_checkpointed",
        fan_out,
        [
            invocation({"items": [1, 2], "out": []}),
            invocation({"items": [2, 5], "out": []}),
            counts(),
        ],
        checkpointer=True,
    ),
    Case(
        "cache_same_thread_checkpointed",
        keyed,
        [invocation(ONE), invocation(ONE_RETAGGED), invocation(TWO), counts()],
        checkpointer=True,
    ),
    Case(
        "cache_across_threads",
        chain,
        [
            on_thread("t1", ONE),
            on_thread("t2", ONE),
            on_thread("t3", TWO),
            on_thread("t4", TWO, is_async=True),
            on_thread("t5", ONE, is_async=True),
            counts(),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "cache_clear",
        chain,
        [
            invocation(ONE),
            clear(),
            invocation(ONE),
            clear(["note"]),
            invocation(ONE),
            clear(["double", "missing"]),
            invocation(ONE),
            clear([], is_async=True),
            invocation(ONE),
            clear(["double"], is_async=True),
            invocation(ONE),
            clear_without_cache(),
            counts(),
        ],
    ),
    Case(
        "cache_default_policy",
        defaults,
        [invocation(ONE), invocation(ONE_RETAGGED), invocation(ONE), counts()],
        checkpointer=True,
    ),
    Case(
        "cache_command_route",
        routed,
        [
            invocation(ONE),
            invocation(ONE),
            invocation({"x": 9, "tag": "t", "log": []}),
            invocation({"x": 9, "tag": "t", "log": []}),
            counts(),
        ],
    ),
    Case(
        "cache_async_nodes",
        async_nodes,
        [invocation(ONE), invocation(ONE), invocation(TWO), counts()],
        only=("ainvoke", "astream"),
    ),
    Case(
        "cache_debug_streams",
        keyed,
        [
            operation("first", streamed(ONE, ["tasks", "debug", "updates"])),
            operation("cached", streamed(ONE, ["tasks", "debug", "updates"])),
            operation("cached_async", streamed(ONE, ["tasks", "updates"], run_async=True)),
            counts(),
        ],
        checkpointer=True,
        only=("invoke",),
    ),
    Case(
        "cache_error_not_cached",
        failing,
        [invocation(ONE), invocation(ONE), invocation(ONE), counts()],
        checkpointer=True,
    ),
]
