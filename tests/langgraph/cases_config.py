"""Cases: config and configurable values in nodes, the ``custom`` stream, retries, async
nodes."""

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig

from tests.langgraph.harness import Case, invocation


class Configured(TypedDict):
    seen: Annotated[list[Any], operator.add]


def configurable(lib: Any, saver: Any) -> Any:
    def reader(s: Configured, config: RunnableConfig) -> dict[str, Any]:
        conf = config["configurable"]
        meta = config["metadata"]
        return {
            "seen": [
                conf.get("user"),
                conf.get("thread_id") is not None,
                meta["langgraph_node"],
                meta["langgraph_step"],
                meta["langgraph_triggers"],
                meta.get("tenant"),
            ]
        }

    def via_get_config(s: Configured) -> dict[str, Any]:
        config = lib.config.get_config()
        return {"seen": [config["configurable"]["user"], config["metadata"]["langgraph_node"]]}

    g = lib.graph.StateGraph(Configured)
    g.add_node("reader", reader)
    g.add_node("via_get_config", via_get_config)
    g.add_edge(lib.graph.START, "reader")
    g.add_edge("reader", "via_get_config")
    return g.compile(checkpointer=saver)


def custom_stream(lib: Any, saver: Any) -> Any:
    def talk(s: Configured) -> dict[str, Any]:
        write = lib.config.get_stream_writer()
        write({"progress": 1})
        write("halfway")
        return {"seen": ["talk"]}

    def with_writer(s: Configured, writer: lib.types.StreamWriter) -> dict[str, Any]:  # type: ignore[name-defined]
        writer({"from": "kwarg"})
        return {"seen": ["writer"]}

    g = lib.graph.StateGraph(Configured)
    g.add_node("talk", talk)
    g.add_node("with_writer", with_writer)
    g.add_node("quiet", lambda s: {"seen": ["quiet"]})
    g.add_edge(lib.graph.START, "talk")
    g.add_edge(lib.graph.START, "quiet")
    g.add_edge("talk", "with_writer")
    return g.compile(checkpointer=saver)


class Flaky(TypedDict):
    attempts: Annotated[list[int], operator.add]
    done: bool


def retrying(lib: Any, saver: Any) -> Any:
    calls = {"n": 0}

    def flaky(s: Flaky) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        return {"attempts": [calls["n"]], "done": True}

    policy = lib.types.RetryPolicy(initial_interval=0.0, jitter=False, max_attempts=5)
    g = lib.graph.StateGraph(Flaky)
    g.add_node("flaky", flaky, retry_policy=policy)
    g.add_edge(lib.graph.START, "flaky")
    return g.compile(checkpointer=saver)


def retry_exhausted(lib: Any, saver: Any) -> Any:
    calls = {"n": 0}

    def always(s: Flaky) -> dict[str, Any]:
        calls["n"] += 1
        raise ValueError(f"attempt {calls['n']}")

    policy = lib.types.RetryPolicy(
        initial_interval=0.0, jitter=False, max_attempts=3, retry_on=ValueError
    )
    g = lib.graph.StateGraph(Flaky)
    g.add_node("always", always, retry_policy=[policy])
    g.add_edge(lib.graph.START, "always")
    return g.compile(checkpointer=saver)


def retry_not_matching(lib: Any, saver: Any) -> Any:
    """The default policy does not retry programming errors such as ``ValueError``."""
    calls = {"n": 0}

    def fails(s: Flaky) -> dict[str, Any]:
        calls["n"] += 1
        raise ValueError(f"attempt {calls['n']}")

    g = lib.graph.StateGraph(Flaky)
    g.add_node("fails", fails, retry_policy=lib.types.RetryPolicy(initial_interval=0.0))
    g.add_edge(lib.graph.START, "fails")
    return g.compile(checkpointer=saver)


class Pair(TypedDict):
    a: int
    b: int
    out: Annotated[list[int], operator.add]


def async_nodes(lib: Any, saver: Any) -> Any:
    async def double(s: Pair) -> dict[str, Any]:
        return {"out": [s["a"] * 2]}

    async def triple(s: Pair) -> dict[str, Any]:
        return {"out": [s["b"] * 3]}

    def total(s: Pair) -> dict[str, Any]:
        return {"a": sum(s["out"])}

    g = lib.graph.StateGraph(Pair)
    g.add_node("double", double)
    g.add_node("triple", triple)
    g.add_node("total", total)
    g.add_edge(lib.graph.START, "double")
    g.add_edge(lib.graph.START, "triple")
    g.add_edge(["double", "triple"], "total")
    return g.compile(checkpointer=saver)


def async_node_called_sync(lib: Any, saver: Any) -> Any:
    async def only_async(s: Pair) -> dict[str, Any]:
        return {"a": 1}

    g = lib.graph.StateGraph(Pair)
    g.add_node("only_async", only_async)
    g.add_edge(lib.graph.START, "only_async")
    return g.compile(checkpointer=saver)


CASES = [
    Case(
        "configurable",
        configurable,
        [invocation({"seen": []})],
        checkpointer=True,
        config={"configurable": {"user": "ada"}, "metadata": {"tenant": "t1"}},
    ),
    Case("custom_stream", custom_stream, [invocation({"seen": []})]),
    Case("retrying", retrying, [invocation({"attempts": []})], checkpointer=True),
    Case("retry_exhausted", retry_exhausted, [invocation({"attempts": []})], checkpointer=True),
    Case("retry_not_matching", retry_not_matching, [invocation({"attempts": []})]),
    Case(
        "async_nodes",
        async_nodes,
        [invocation({"a": 2, "b": 5})],
        checkpointer=True,
        only=("astream",),
    ),
    Case("async_node_called_sync", async_node_called_sync, [invocation({"a": 2, "b": 5})]),
]
