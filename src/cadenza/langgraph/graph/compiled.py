"""``CompiledStateGraph``: running a graph (``invoke``, ``stream`` and their async forms)
and reading or changing a thread's state (``get_state``, ``get_state_history``,
``update_state``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine import state_read, state_update
from cadenza.langgraph._engine.drive import adrive, drive
from cadenza.langgraph._engine.runconfig import ensure_config
from cadenza.langgraph.graph._run import (
    Buffer,
    eager,
    format_chunk,
    invoke_output,
    make_loop,
    modes_of,
)
from cadenza.langgraph.types import StateSnapshot

if TYPE_CHECKING:
    from cadenza.langgraph._engine.cache import NodeCache
    from cadenza.langgraph._engine.node import Node
    from cadenza.langgraph._engine.task import Task
    from cadenza.langgraph.channels.base import BaseChannel
    from cadenza.langgraph.graph.state import StateGraph

__all__ = ("CompiledStateGraph",)


class CompiledStateGraph:
    """A compiled ``StateGraph``; safe to run many times and from many threads."""

    _is_cadenza_graph = True
    stream_mode = "updates"
    retry_policy: tuple[Any, ...] = ()

    def __init__(
        self,
        *,
        builder: StateGraph[Any],
        nodes: dict[str, Node],
        channels: dict[str, BaseChannel],
        output_channels: Sequence[str] | str,
        stream_channels: Sequence[str] | str,
        trigger_to_nodes: Mapping[str, Sequence[str]],
        volatile: tuple[str, ...],
        finishing: tuple[str, ...],
        checkpointer: Any,
        store: Any,
        interrupt_before: Any,
        interrupt_after: Any,
        debug: bool,
        name: str,
        config: Mapping[str, Any] | None = None,
        cache: Any = None,
        node_cache: NodeCache | None = None,
    ) -> None:
        self.builder = builder
        self.nodes = nodes
        self.channels = channels
        self.output_channels = output_channels
        self.stream_channels = stream_channels
        self.trigger_to_nodes = trigger_to_nodes
        self.volatile = volatile
        self.finishing = finishing
        self.checkpointer = checkpointer
        self.cache = cache
        # what runs check: None unless a cache is set and some node has a cache policy
        self.node_cache = node_cache
        self.store = store
        self.interrupt_before_nodes = interrupt_before
        self.interrupt_after_nodes = interrupt_after
        self.debug = debug
        self.name = name
        self.config = dict(config or {})

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        name = name or self.name
        return f"{name}{suffix}" if suffix else name

    def __repr__(self) -> str:
        return f"CompiledStateGraph(name={self.name!r}, nodes={list(self.builder.nodes)})"

    def with_config(
        self, config: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> CompiledStateGraph:
        """A copy that runs with ``config`` merged under each call's config."""
        clone = object.__new__(CompiledStateGraph)
        clone.__dict__.update(self.__dict__)
        clone.config = (
            ensure_config(self.config, config, kwargs) if (config or kwargs) else dict(self.config)
        )
        return clone

    def get_graph(self, config: Any = None, *, xray: int | bool = False) -> Any:
        from cadenza.langgraph.graph._draw import draw_graph

        return draw_graph(self)

    # ------------------------------------------------------------------ running

    def invoke(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str = "values",
        print_mode: Any = (),
        output_keys: Sequence[str] | str | None = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        durability: str | None = None,
        version: str = "v1",
        **kwargs: Any,
    ) -> Any:
        """Run the graph to its end (or an interrupt) and return the output state."""
        options = _options(context, interrupt_before, interrupt_after, durability)
        if stream_mode != "values":
            stream = self.stream(
                input,
                config,
                stream_mode=stream_mode,
                output_keys=output_keys,
                version=version,
                **options,
            )
            return list(stream)
        loop = self._loop(input, config, None, None, output_keys, False, False, options)
        for _ in drive(loop):
            pass
        return invoke_output(loop, version)

    async def ainvoke(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str = "values",
        print_mode: Any = (),
        output_keys: Sequence[str] | str | None = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        durability: str | None = None,
        version: str = "v1",
        **kwargs: Any,
    ) -> Any:
        """``invoke`` on the event loop: async nodes run concurrently, sync ones in threads."""
        options = _options(context, interrupt_before, interrupt_after, durability)
        if stream_mode != "values":
            stream = self.astream(
                input,
                config,
                stream_mode=stream_mode,
                output_keys=output_keys,
                version=version,
                **options,
            )
            return [chunk async for chunk in stream]
        loop = self._loop(input, config, None, None, output_keys, False, True, options)
        async for _ in adrive(loop):
            pass
        return invoke_output(loop, version)

    def stream(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] | None = None,
        print_mode: Any = (),
        output_keys: Sequence[str] | str | None = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        durability: str | None = None,
        subgraphs: bool = False,
        debug: bool | None = None,
        version: str = "v1",
        **kwargs: Any,
    ) -> Iterator[Any]:
        """Run the graph, yielding what ``stream_mode`` asks for as it happens."""
        mode = self._default_mode(stream_mode)
        out = Buffer()
        options = _options(context, interrupt_before, interrupt_after, durability)
        loop = self._loop(input, config, mode, out, output_keys, subgraphs, False, options)
        for _ in drive(loop, eager=eager(loop)):
            while out:
                yield format_chunk(out.popleft(), mode, subgraphs, version)

    async def astream(
        self,
        input: Any,
        config: Mapping[str, Any] | None = None,
        *,
        context: Any = None,
        stream_mode: str | Sequence[str] | None = None,
        print_mode: Any = (),
        output_keys: Sequence[str] | str | None = None,
        interrupt_before: Any = None,
        interrupt_after: Any = None,
        durability: str | None = None,
        subgraphs: bool = False,
        debug: bool | None = None,
        version: str = "v1",
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """``stream`` on the event loop; chunks a node streams arrive while it runs."""
        mode = self._default_mode(stream_mode)
        wake = asyncio.Event()
        out = Buffer(wake)
        options = _options(context, interrupt_before, interrupt_after, durability)
        loop = self._loop(input, config, mode, out, output_keys, subgraphs, True, options)
        async for _ in adrive(loop, wake if eager(loop) else None):
            while out:
                yield format_chunk(out.popleft(), mode, subgraphs, version)

    def _loop(
        self,
        input: Any,
        config: Mapping[str, Any] | None,
        mode: str | list[str] | None,
        out: Buffer | None,
        output_keys: Sequence[str] | str | None,
        subgraphs: bool,
        is_async: bool,
        options: dict[str, Any],
    ) -> Any:
        """The loop of one call; ``mode`` ``None`` is invoke's: nothing streamed, and the
        output keys the caller gave."""
        if mode is not None and output_keys is None:
            output_keys = self.stream_channels
        modes = frozenset() if mode is None else modes_of(mode)
        return make_loop(
            self,
            input,
            config,
            modes=modes,
            out=out,
            output_keys=output_keys,
            subgraphs=subgraphs,
            is_async=is_async,
            **options,
        )

    def _default_mode(self, stream_mode: str | Sequence[str] | None) -> str | list[str]:
        if stream_mode is None:
            return self.stream_mode
        return stream_mode if isinstance(stream_mode, str) else list(stream_mode)

    # ------------------------------------------------------------------ as a node

    def run_as_node(self, value: Any, task: Task) -> Any:
        """Run as a node of another graph (a subgraph): its state, its checkpoints under
        the task's namespace, its interrupts raised to the parent."""
        return self.invoke(value, task.config)

    async def arun_as_node(self, value: Any, task: Task) -> Any:
        return await self.ainvoke(value, task.config)

    # ------------------------------------------------------------------ cache

    def clear_cache(self, nodes: Sequence[str] | None = None) -> None:
        """Delete the cached writes of ``nodes`` (every node when none are named)."""
        self._cache_or_raise().clear(self._cache_namespaces(nodes))

    async def aclear_cache(self, nodes: Sequence[str] | None = None) -> None:
        await self._cache_or_raise().aclear(self._cache_namespaces(nodes))

    def _cache_or_raise(self) -> Any:
        if not self.cache:
            raise ValueError("No cache is set for this graph. Cannot clear cache.")
        return self.cache

    def _cache_namespaces(self, nodes: Sequence[str] | None) -> list[tuple[str, ...]]:
        from cadenza.langgraph._engine.cache import namespace

        return [
            namespace(key, node.caller.fn if node.caller is not None else None)
            for key in nodes or self.nodes
            if (node := self.nodes.get(key)) is not None
        ]

    # ------------------------------------------------------------------ state

    def get_state(self, config: Mapping[str, Any], *, subgraphs: bool = False) -> StateSnapshot:
        """The thread's state now (or at ``checkpoint_id``): values, next nodes, tasks."""
        return state_read.get_state(self, config, subgraphs=subgraphs)

    async def aget_state(
        self, config: Mapping[str, Any], *, subgraphs: bool = False
    ) -> StateSnapshot:
        return await state_read.aget_state(self, config, subgraphs=subgraphs)

    def get_state_history(
        self,
        config: Mapping[str, Any],
        *,
        filter: dict[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[StateSnapshot]:
        """The thread's snapshots, newest first."""
        return state_read.get_state_history(self, config, filter=filter, before=before, limit=limit)

    async def aget_state_history(
        self,
        config: Mapping[str, Any],
        *,
        filter: dict[str, Any] | None = None,
        before: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[StateSnapshot]:
        async for snapshot in state_read.aget_state_history(
            self, config, filter=filter, before=before, limit=limit
        ):
            yield snapshot

    def update_state(
        self,
        config: Mapping[str, Any],
        values: Any,
        as_node: str | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        """Write ``values`` to the thread as if node ``as_node`` had returned them."""
        return state_update.update_state(self, config, values, as_node)

    async def aupdate_state(
        self,
        config: Mapping[str, Any],
        values: Any,
        as_node: str | None = None,
        task_id: str | None = None,
    ) -> dict[str, Any]:
        return await state_update.aupdate_state(self, config, values, as_node)


def _options(
    context: Any, interrupt_before: Any, interrupt_after: Any, durability: str | None
) -> dict[str, Any]:
    """The run options every entry point passes through unchanged."""
    return {
        "context": context,
        "interrupt_before": interrupt_before,
        "interrupt_after": interrupt_after,
        "durability": durability,
    }
