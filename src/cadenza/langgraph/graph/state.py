"""``StateGraph``: LangGraph's builder, with the same methods, arguments and errors."""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cadenza.langgraph._keys import END, NS_END, NS_SEP, START
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.channels.last_value import LastValue
from cadenza.langgraph.graph._inspect import (
    command_ends,
    first_param_schema,
    literal_ends,
    node_name,
    path_name,
)
from cadenza.langgraph.graph._schema import channels_for
from cadenza.langgraph.graph.compiled import CompiledStateGraph
from cadenza.langgraph.types import CachePolicy, RetryPolicy, TimeoutPolicy

if TYPE_CHECKING:
    from cadenza.observe.base import Observer

__all__ = ("CompiledStateGraph", "StateGraph")

logger = logging.getLogger("cadenza.langgraph")
StateT = TypeVar("StateT")


@dataclass(slots=True)
class NodeSpec:
    """A node as declared, before compilation."""

    runnable: Any
    metadata: dict[str, Any] | None
    input_schema: Any
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None
    ends: tuple[str, ...] | dict[str, str] = ()
    defer: bool = False
    timeout: TimeoutPolicy | None = None
    cache_policy: CachePolicy | None = None


@dataclass(slots=True)
class BranchSpec:
    """A conditional edge as declared."""

    path: Callable[..., Any]
    ends: dict[Hashable, str] | None
    input_schema: Any = None
    name: str = "condition"


@dataclass(slots=True)
class _Defaults:
    retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None
    timeout: TimeoutPolicy | None = None
    cache_policy: CachePolicy | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StateGraph(Generic[StateT]):
    """A graph whose nodes read and write a shared state; compile it to run it."""

    def __init__(
        self,
        state_schema: Any = None,
        context_schema: Any = None,
        *,
        input_schema: Any = None,
        output_schema: Any = None,
        **kwargs: Any,
    ) -> None:
        for old, new in (("config_schema", "context_schema"), ("input", "input_schema")):
            if old in kwargs:
                warnings.warn(f"`{old}` is deprecated; use `{new}`.", stacklevel=2)
        context_schema = context_schema or kwargs.pop("config_schema", None)
        input_schema = input_schema or kwargs.pop("input", None)
        output_schema = output_schema or kwargs.pop("output", None)
        if kwargs:
            raise TypeError(f"StateGraph() got unexpected keyword arguments: {sorted(kwargs)}")
        if state_schema is None:
            if input_schema is None or output_schema is None:
                raise ValueError("Must provide state_schema or input and output")
            state_schema = input_schema
        self.nodes: dict[str, NodeSpec] = {}
        self.edges: set[tuple[str, str]] = set()
        self.waiting_edges: set[tuple[tuple[str, ...], str]] = set()
        self.branches: defaultdict[str, dict[str, BranchSpec]] = defaultdict(dict)
        self.schemas: dict[Any, dict[str, Any]] = {}
        self.channels: dict[str, BaseChannel] = {}
        self.managed: dict[str, Any] = {}
        self.compiled = False
        self.state_schema = state_schema
        self.input_schema = input_schema or state_schema
        self.output_schema = output_schema or state_schema
        self.context_schema = context_schema
        self._defaults = _Defaults()
        self._add_schema(self.state_schema)
        self._add_schema(self.input_schema, allow_managed=False)
        self._add_schema(self.output_schema, allow_managed=False)

    def _add_schema(self, schema: Any, /, allow_managed: bool = True) -> None:
        if schema in self.schemas:
            return
        channels, managed = channels_for(schema)
        if managed and not allow_managed:
            raise ValueError(
                f"Invalid managed channels detected in {getattr(schema, '__name__', '')}: "
                f"{', '.join(managed)}. Managed channels are not permitted in Input/Output "
                "schema."
            )
        self.schemas[schema] = {**channels, **managed}
        for key, channel in channels.items():
            if key in self.channels:
                if self.channels[key] != channel and not isinstance(channel, LastValue):
                    raise ValueError(f"Channel '{key}' already exists with a different type")
            else:
                self.channels[key] = channel
        for key, marker in managed.items():
            if key in self.managed and self.managed[key] is not marker:
                raise ValueError(f"Managed value '{key}' already exists with a different type")
            self.managed.setdefault(key, marker)

    @property
    def _all_edges(self) -> set[tuple[str, str]]:
        return self.edges | {(s, end) for starts, end in self.waiting_edges for s in starts}

    def set_node_defaults(
        self,
        *,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache_policy: CachePolicy | None = None,
        timeout: float | TimeoutPolicy | None = None,
        **kwargs: Any,
    ) -> StateGraph[StateT]:
        """Default retry policy, cache policy and timeout for nodes that set none (applied
        when the graph is compiled)."""
        if kwargs:
            raise ValueError(
                f"set_node_defaults: {sorted(kwargs)} not supported by the Cadenza facade"
            )
        if retry_policy is not None:
            self._defaults.retry_policy = retry_policy
        if cache_policy is not None:
            self._defaults.cache_policy = cache_policy
        if timeout is not None:
            self._defaults.timeout = TimeoutPolicy.coerce(timeout)
        return self

    def add_node(
        self,
        node: Any,
        action: Any = None,
        *,
        defer: bool = False,
        metadata: dict[str, Any] | None = None,
        input_schema: Any = None,
        retry_policy: RetryPolicy | Sequence[RetryPolicy] | None = None,
        cache_policy: CachePolicy | None = None,
        destinations: dict[str, str] | tuple[str, ...] | None = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> StateGraph[StateT]:
        """Add a node: a function of the state (sync or async), a runnable, or a compiled
        graph (a subgraph). Named by ``node`` or, when ``node`` is the action, its name."""
        if retry_policy is None and kwargs.get("retry") is not None:
            retry_policy = kwargs.pop("retry")
        if input_schema is None and kwargs.get("input") is not None:
            input_schema = kwargs.pop("input")
        kwargs.pop("trace_policy", None)
        if kwargs.get("error_handler") is not None:
            raise ValueError("add_node(error_handler=...) is not supported by the Cadenza facade")
        kwargs.pop("error_handler", None)
        if kwargs:
            raise TypeError(f"add_node() got unexpected keyword arguments: {sorted(kwargs)}")
        if not isinstance(node, str):
            action = node
            node = node_name(action)
        if self.compiled:
            logger.warning(
                "Adding a node to a graph that has already been compiled. This will not be "
                "reflected in the compiled graph."
            )
        if action is None:
            raise RuntimeError
        if node in self.nodes:
            raise ValueError(f"Node `{node}` already present.")
        if node in (END, START):
            raise ValueError(f"Node `{node}` is reserved.")
        for character in (NS_SEP, NS_END):
            if character in node:
                raise ValueError(
                    f"'{character}' is a reserved character and is not allowed in the node names."
                )
        inferred, hints = first_param_schema(action)
        ends: tuple[str, ...] | dict[str, str] = command_ends(hints)
        if destinations is not None:
            ends = destinations
        schema = input_schema or inferred or self.state_schema
        self.nodes[node] = NodeSpec(
            action,
            metadata,
            schema,
            retry_policy,
            ends,
            defer,
            TimeoutPolicy.coerce(timeout),
            cache_policy,
        )
        if input_schema or inferred:
            self._add_schema(input_schema or inferred)
        return self

    def add_edge(self, start_key: str | list[str], end_key: str) -> StateGraph[StateT]:
        """An edge; with a list of starts, ``end_key`` waits for all of them (a join)."""
        if self.compiled:
            logger.warning(
                "Adding an edge to a graph that has already been compiled. This will not be "
                "reflected in the compiled graph."
            )
        if isinstance(start_key, str):
            if start_key == END:
                raise ValueError("END cannot be a start node")
            if end_key == START:
                raise ValueError("START cannot be an end node")
            self.edges.add((start_key, end_key))
            return self
        for start in start_key:
            if start == END:
                raise ValueError("END cannot be a start node")
            if start not in self.nodes:
                raise ValueError(f"Need to add_node `{start}` first")
        if end_key == START:
            raise ValueError("START cannot be an end node")
        if end_key != END and end_key not in self.nodes:
            raise ValueError(f"Need to add_node `{end_key}` first")
        self.waiting_edges.add((tuple(start_key), end_key))
        return self

    def add_conditional_edges(
        self,
        source: str,
        path: Callable[..., Any],
        path_map: dict[Hashable, str] | list[str] | None = None,
    ) -> StateGraph[StateT]:
        """After ``source``, run the node(s) ``path`` returns (names, ``Send``s or END),
        optionally mapped through ``path_map``."""
        if self.compiled:
            logger.warning(
                "Adding an edge to a graph that has already been compiled. This will not be "
                "reflected in the compiled graph."
            )
        name = path_name(path)
        if name in self.branches[source]:
            raise ValueError(f"Branch with name `{name}` already exists for node `{source}`")
        ends: dict[Hashable, str] | None = None
        if isinstance(path_map, dict):
            ends = dict(path_map)
        elif isinstance(path_map, list):
            ends = {p: p for p in path_map}
        else:
            ends = literal_ends(path)
        schema, _ = first_param_schema(path)
        self.branches[source][name] = BranchSpec(path, ends, schema, name)
        if schema is not None:
            self._add_schema(schema)
        return self

    def add_sequence(self, nodes: Sequence[Any]) -> StateGraph[StateT]:
        """Add nodes (or ``(name, node)`` pairs) joined by edges, in order."""
        if len(nodes) < 1:
            raise ValueError("Sequence requires at least one node.")
        previous: str | None = None
        for item in nodes:
            if isinstance(item, tuple) and len(item) == 2:
                name, action = item
            else:
                action = item
                name = getattr(action, "__name__", action.__class__.__name__)
            if name in self.nodes:
                raise ValueError(
                    f"Node names must be unique: node with the name '{name}' already exists. "
                    "If you need to use two different runnables/callables with the same name "
                    "(for example, using `lambda`), please provide them as tuples (name, "
                    "runnable/callable)."
                )
            self.add_node(name, action)
            if previous is not None:
                self.add_edge(previous, name)
            previous = name
        return self

    def set_entry_point(self, key: str) -> StateGraph[StateT]:
        return self.add_edge(START, key)

    def set_conditional_entry_point(
        self, path: Callable[..., Any], path_map: dict[Hashable, str] | list[str] | None = None
    ) -> StateGraph[StateT]:
        return self.add_conditional_edges(START, path, path_map)

    def set_finish_point(self, key: str) -> StateGraph[StateT]:
        return self.add_edge(key, END)

    def validate(self, interrupt: Sequence[str] | None = None) -> StateGraph[StateT]:
        """Check every edge names existing nodes and START has a way out."""
        sources = {src for src, _ in self._all_edges} | set(self.branches)
        sources |= {name for name, spec in self.nodes.items() if spec.ends}
        for source in sources:
            if source not in self.nodes and source != START:
                raise ValueError(f"Found edge starting at unknown node '{source}'")
        if START not in sources:
            raise ValueError(
                "Graph must have an entrypoint: add at least one edge from START to another node"
            )
        targets = {end for _, end in self._all_edges}
        for start, branches in self.branches.items():
            for cond, branch in branches.items():
                if branch.ends is not None:
                    for end in branch.ends.values():
                        if end not in self.nodes and end != END:
                            raise ValueError(
                                f"At '{start}' node, '{cond}' branch found unknown target '{end}'"
                            )
                        targets.add(end)
                else:
                    targets.add(END)
                    targets.update(n for n in self.nodes if n != start)
        for spec in self.nodes.values():
            if spec.ends:
                targets.update(spec.ends)
        for target in targets:
            if target not in self.nodes and target != END:
                raise ValueError(f"Found edge ending at unknown node `{target}`")
        for node in interrupt or ():
            if node not in self.nodes:
                raise ValueError(f"Interrupt node `{node}` not found")
        self.compiled = True
        return self

    def compile(
        self,
        checkpointer: Any = None,
        *,
        cache: Any = None,
        store: Any = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        debug: bool = False,
        name: str | None = None,
        observers: Sequence[Observer] = (),
        **kwargs: Any,
    ) -> CompiledStateGraph:
        """Validate the graph and build the runnable ``CompiledStateGraph``.

        ``observers`` (Cadenza's, :class:`~cadenza.observe.base.Observer`) are told of every
        event the checkpointer stores in the graph's threads, as an engine tells its observers
        of a native run's: the checkpointer must be one of Cadenza's."""
        from cadenza.langgraph.graph._compile import compile_graph

        kwargs.pop("transformers", None)
        if kwargs:
            raise TypeError(f"compile() got unexpected keyword arguments: {sorted(kwargs)}")
        interrupt_before = interrupt_before or []
        interrupt_after = interrupt_after or []
        self.validate(
            interrupt=(
                (interrupt_before if interrupt_before != "*" else []) + interrupt_after
                if interrupt_after != "*"
                else []
            )
        )
        return compile_graph(
            self,
            checkpointer=checkpointer,
            cache=cache,
            store=store,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
            name=name or "LangGraph",
            observers=observers,
        )
