"""Building the runnable graph from a ``StateGraph``: channels for state keys, routing and
joins; one compiled ``Node`` per node with its triggers, reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.call import Caller
from cadenza.langgraph._engine.node import Branch, Node, branch_channel
from cadenza.langgraph._engine.serde import with_facade_allowlist
from cadenza.langgraph._keys import END, ROOT, START, TASKS
from cadenza.langgraph.channels.any_value import UntrackedValue
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.channels.binop import BinaryOperatorAggregate
from cadenza.langgraph.channels.ephemeral_value import EphemeralValue
from cadenza.langgraph.channels.last_value import LastValue, LastValueAfterFinish
from cadenza.langgraph.channels.named_barrier_value import (
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
)
from cadenza.langgraph.channels.topic import Topic
from cadenza.langgraph.graph._schema import mapper_for
from cadenza.langgraph.graph.compiled import CompiledStateGraph
from cadenza.langgraph.managed import is_managed_value
from cadenza.langgraph.types import RetryPolicy, Send, ensure_valid_checkpointer

if TYPE_CHECKING:
    from cadenza.langgraph._engine.cache import NodeCache
    from cadenza.langgraph.graph.state import StateGraph
    from cadenza.observe.base import Observer

__all__ = ("compile_graph",)

# channels a step without writes leaves unchanged, skipped when a step ends
_STEADY = (
    LastValue,
    BinaryOperatorAggregate,
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
    LastValueAfterFinish,
    UntrackedValue,
)


def _retry(policy: RetryPolicy | Sequence[RetryPolicy] | None) -> tuple[RetryPolicy, ...]:
    if policy is None:
        return ()
    if isinstance(policy, RetryPolicy) or (
        isinstance(policy, tuple) and hasattr(policy, "max_attempts")
    ):
        return (policy,)  # type: ignore[return-value]
    return tuple(policy)


def _find_subgraph(runnable: Any) -> Any:
    """The compiled graph a node runs: the node itself, or one a node function reaches
    through its closure or the globals it names (for state inspection only)."""
    if getattr(runnable, "_is_cadenza_graph", False):
        return runnable if runnable.checkpointer is not False else None
    fn = getattr(runnable, "__func__", runnable)
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    candidates = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            candidates.append(cell.cell_contents)
        except ValueError:
            continue
    namespace = getattr(fn, "__globals__", {})
    candidates.extend(namespace[n] for n in code.co_names if n in namespace)
    for value in candidates:
        if getattr(value, "_is_cadenza_graph", False) and value.checkpointer is not False:
            return value
    return None


def _node_cache(builder: StateGraph[Any], cache: Any) -> NodeCache | None:
    """The graph's node caching: ``None`` without a cache or without a node that has a
    cache policy (its own or the graph's default), so that runs check one attribute."""
    if cache is None:
        return None
    default = builder._defaults.cache_policy
    policies = {
        key: spec.cache_policy or default
        for key, spec in builder.nodes.items()
        if spec.cache_policy is not None or default is not None
    }
    if not policies:
        return None
    from cadenza.langgraph._engine.cache import NodeCache, namespace

    return NodeCache(
        cache,
        {
            key: (policy, namespace(key, builder.nodes[key].runnable))
            for key, policy in policies.items()
        },
    )


def _observed(checkpointer: Any, observers: Sequence[Observer]) -> Any:
    """The checkpointer that also tells ``observers`` of the threads it stores."""
    if not observers:
        return checkpointer
    if not callable(getattr(checkpointer, "with_observers", None)):
        raise TypeError(
            "compile(observers=...) needs one of Cadenza's checkpointers, which record the "
            "graph's threads as runs (cadenza.langgraph.checkpoint.memory.InMemorySaver, "
            f".sqlite.SqliteSaver, .postgres.PostgresSaver...), not {checkpointer!r}"
        )
    return checkpointer.with_observers(observers)


def compile_graph(
    builder: StateGraph[Any],
    *,
    checkpointer: Any,
    cache: Any = None,
    store: Any = None,
    interrupt_before: Any,
    interrupt_after: Any,
    debug: bool,
    name: str,
    observers: Sequence[Observer] = (),
) -> CompiledStateGraph:
    checkpointer = with_facade_allowlist(
        _observed(ensure_valid_checkpointer(checkpointer), observers),
        [builder.state_schema, builder.input_schema, builder.output_schema, *builder.schemas],
    )
    schemas = builder.schemas
    out_schema = schemas[builder.output_schema]
    output_channels: Sequence[str] | str = (
        ROOT
        if len(out_schema) == 1 and ROOT in out_schema
        else [k for k, v in out_schema.items() if not is_managed_value(v)]
    )
    stream_channels: Sequence[str] | str = (
        ROOT
        if len(builder.channels) == 1 and ROOT in builder.channels
        else [k for k in builder.channels]
    )
    channels: dict[str, BaseChannel] = {
        **builder.channels,
        START: EphemeralValue(builder.input_schema),
        TASKS: Topic(Send, accumulate=False),
    }
    channels[START].key = START
    mappers: dict[Any, Any] = {}

    def mapper(keys: list[str], schema: Any) -> Any:
        if schema not in mappers:
            mappers[schema] = mapper_for(keys, schema)
        return mappers[schema]

    update_keys = list(builder.channels) + list(builder.managed)
    start_keys = [k for k, v in schemas[builder.input_schema].items() if not is_managed_value(v)]
    nodes: dict[str, Node] = {
        START: Node(
            START,
            triggers=[START],
            reads=START,
            mapper=None,
            managed={},
            caller=None,
            update_keys=start_keys,
            hidden=True,
        )
    }
    defaults = builder._defaults
    for key, spec in builder.nodes.items():
        reads = list(schemas[spec.input_schema])
        trigger = branch_channel(key)
        channels[trigger] = (
            LastValueAfterFinish(Any) if spec.defer else EphemeralValue(Any, guard=False)
        )
        channels[trigger].key = trigger
        runnable = spec.runnable
        nodes[key] = Node(
            key,
            triggers=[trigger],
            reads=ROOT if reads == [ROOT] else tuple(reads),
            mapper=mapper(reads, spec.input_schema),
            managed={k: builder.managed[k] for k in reads if k in builder.managed},
            caller=Caller(runnable, key),
            update_keys=update_keys,
            retry=_retry(spec.retry_policy or defaults.retry_policy),
            subgraph=_find_subgraph(runnable),
            metadata=spec.metadata,
            timeout=spec.timeout or defaults.timeout,
            defer=spec.defer,
            ends=spec.ends,
        )
    node_cache = _node_cache(builder, cache)
    for start, end in sorted(builder.edges):
        if end != END:
            nodes[start].static_writes.append((branch_channel(end), None))
    for starts, end in sorted(builder.waiting_edges):
        if end == END:
            continue
        join = f"join:{'+'.join(starts)}:{end}"
        barrier = NamedBarrierValueAfterFinish if builder.nodes[end].defer else NamedBarrierValue
        channels[join] = barrier(str, set(starts))
        channels[join].key = join
        nodes[end].triggers.append(join)
        for start in starts:
            nodes[start].static_writes.append((join, start))
    for start, branches in builder.branches.items():
        for cond, spec in branches.items():
            schema = spec.input_schema or (
                builder.nodes[start].input_schema
                if start in builder.nodes
                else builder.state_schema
            )
            keys = list(schemas[schema])
            nodes[start].branches.append(
                Branch(
                    Caller(spec.path, cond),
                    spec.ends,
                    select=keys[0] if keys == [ROOT] else tuple(keys),
                    mapper=mapper(keys, schema),
                    managed={k: builder.managed[k] for k in keys if k in builder.managed},
                    input_schema=spec.input_schema,
                )
            )
    trigger_to_nodes: dict[str, list[str]] = {}
    for key, node in nodes.items():
        for trigger in node.triggers:
            trigger_to_nodes.setdefault(trigger, []).append(key)
    base_finish = BaseChannel.finish
    return CompiledStateGraph(
        builder=builder,
        nodes=nodes,
        channels=channels,
        output_channels=output_channels,
        stream_channels=stream_channels,
        trigger_to_nodes=trigger_to_nodes,
        volatile=tuple(k for k, ch in channels.items() if not isinstance(ch, _STEADY)),
        finishing=tuple(k for k, ch in channels.items() if type(ch).finish is not base_finish),
        checkpointer=checkpointer,
        cache=cache,
        node_cache=node_cache,
        store=store,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
        debug=debug,
        name=name,
    )
