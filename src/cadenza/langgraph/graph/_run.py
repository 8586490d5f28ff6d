"""Setting up one run of a compiled graph (config, saver, stream, nesting under a running
task) and shaping what it yields and returns."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._context import maybe_task
from cadenza.langgraph._engine.loop import Loop
from cadenza.langgraph._engine.runconfig import ensure_config
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_MAP,
    CHECKPOINT_NS,
    CONF,
    CONFIG_KEY_CHECKPOINTER,
    INTERRUPT,
    THREAD_ID,
)
from cadenza.langgraph.types import GraphOutput, Interrupt

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task
    from cadenza.langgraph.graph.compiled import CompiledStateGraph

__all__ = ("Buffer", "eager", "format_chunk", "invoke_output", "make_loop", "modes_of")

_MODES = frozenset(("values", "updates", "custom", "messages", "tasks", "checkpoints", "debug"))
_COORDINATES = (THREAD_ID, CHECKPOINT_NS, CHECKPOINT_ID, CHECKPOINT_MAP)


class Buffer(deque):  # type: ignore[type-arg]
    """The output buffer; wakes the async driver when a node streams a chunk."""

    __slots__ = ("event",)

    def __init__(self, event: asyncio.Event | None = None) -> None:
        super().__init__()
        self.event = event

    def append(self, item: Any) -> None:
        super().append(item)
        if self.event is not None:
            self.event.set()


def _saver(graph: CompiledStateGraph, config: Mapping[str, Any]) -> Any:
    if graph.checkpointer is False:
        return None
    if CONFIG_KEY_CHECKPOINTER in config[CONF]:
        return config[CONF][CONFIG_KEY_CHECKPOINTER]
    if graph.checkpointer is True:
        raise RuntimeError("checkpointer=True cannot be used for root graphs.")
    return graph.checkpointer


def make_loop(
    graph: CompiledStateGraph,
    input: Any,
    config: Mapping[str, Any] | None,
    *,
    modes: frozenset[str],
    out: Any,
    output_keys: Sequence[str] | str | None,
    interrupt_before: Any,
    interrupt_after: Any,
    durability: str | None,
    subgraphs: bool,
    context: Any,
    is_async: bool,
) -> Loop:
    """The loop for one run: its config (a subgraph's placed under its task), saver,
    stream and options."""
    parent = maybe_task()
    if parent is not None and not _runs_under(parent, config):
        parent = None
    if parent is not None:
        cfg = ensure_config(parent.config, graph.config, config)
        cfg[CONF].update(parent.loop.services.child_config(parent))
        saver = _child_saver(graph, parent)
        if parent.loop.stream_subgraphs:
            out, modes, subgraphs = parent.loop.out, parent.loop.modes, True
        if context is None:
            context = parent.loop.context
        durability = durability or parent.loop.durability
    else:
        cfg = ensure_config(graph.config, config)
        saver = _saver(graph, cfg)
        if saver is not None and THREAD_ID not in cfg[CONF]:
            raise ValueError(
                "Checkpointer requires one or more of the following 'configurable' keys: "
                "thread_id, checkpoint_ns, checkpoint_id"
            )
    if saver is not None and THREAD_ID in cfg[CONF] and not isinstance(cfg[CONF][THREAD_ID], str):
        cfg[CONF][THREAD_ID] = str(cfg[CONF][THREAD_ID])
    for mode in modes:
        if mode not in _MODES:
            raise ValueError(f"stream mode {mode!r} is not supported by the Cadenza facade")
    messages = None
    if parent is not None and parent.loop.messages is not None:
        messages = parent.loop.messages
    elif "messages" in modes and out is not None:
        from cadenza.langgraph._engine.messages import make_handler

        messages = make_handler(out.append, subgraphs)
    return Loop(
        graph,
        input,
        cfg,
        saver=saver,
        modes=modes,
        out=out,
        output_keys=graph.output_channels if output_keys is None else output_keys,
        interrupt_before=interrupt_before or graph.interrupt_before_nodes,
        interrupt_after=interrupt_after or graph.interrupt_after_nodes,
        durability=durability or "async",
        parent=parent,
        stream_subgraphs=subgraphs,
        context=context,
        is_async=is_async,
        messages=messages,
    )


def _child_saver(graph: CompiledStateGraph, parent: Task) -> Any:
    if graph.checkpointer is False:
        return None
    if graph.checkpointer is None or graph.checkpointer is True:
        return parent.loop.saver
    return graph.checkpointer


def _runs_under(parent: Task, config: Mapping[str, Any] | None) -> bool:
    """Whether a call made while ``parent`` runs is that task's subgraph: no config of its
    own thread, or the task's own config passed on."""
    if not config or not config.get(CONF):
        return True
    conf = config[CONF]
    if conf.get(CHECKPOINT_NS) == parent.ns:
        return True
    return not any(conf.get(k) for k in _COORDINATES)


def eager(loop: Loop) -> bool:
    """Whether output is handed over after every task (LangGraph's eager streaming)."""
    return bool(loop.modes & {"custom", "messages"}) or loop.stream_subgraphs


def modes_of(mode: str | list[str]) -> frozenset[str]:
    return frozenset((mode,) if isinstance(mode, str) else mode)


def format_chunk(
    item: tuple[tuple[str, ...], str, Any], mode: Any, subgraphs: bool, version: str
) -> Any:
    ns, kind, payload = item
    if version == "v2":
        if kind == "values":
            interrupts: tuple[Interrupt, ...] = ()
            if isinstance(payload, dict) and INTERRUPT in payload:
                payload = dict(payload)
                interrupts = payload.pop(INTERRUPT)
            return {"type": kind, "ns": ns, "data": payload, "interrupts": interrupts}
        return {"type": kind, "ns": ns, "data": payload}
    if isinstance(mode, list):
        return (ns, kind, payload) if subgraphs else (kind, payload)
    return (ns, payload) if subgraphs else payload


def invoke_output(loop: Loop, version: str) -> Any:
    stream = loop.stream
    latest = loop.output if stream.seen else None
    if version == "v2":
        return GraphOutput(value=latest, interrupts=tuple(stream.interrupts))
    if stream.interrupts:
        if isinstance(latest, dict):
            return {**latest, INTERRUPT: list(stream.interrupts)}
        return {INTERRUPT: list(stream.interrupts)}
    return latest
