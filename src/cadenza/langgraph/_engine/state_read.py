"""Reading a thread's state through its checkpointer: ``get_state`` and
``get_state_history`` (sync and async), and the helpers ``update_state`` shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.algo import WritesOf, apply_writes, prepare_tasks
from cadenza.langgraph._engine.checkpoint import (
    channels_from_checkpoint,
)
from cadenza.langgraph._engine.emit import read_channels
from cadenza.langgraph._engine.loop import Loop
from cadenza.langgraph._engine.pending import TaskStatus, task_statuses
from cadenza.langgraph._engine.runconfig import ensure_config, patch_configurable
from cadenza.langgraph._engine.task import Task
from cadenza.langgraph._engine.writeback import flush_saver
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_MAP,
    CHECKPOINT_NS,
    CONF,
    CONFIG_KEY_CHECKPOINTER,
    INPUT,
    NULL_TASK_ID,
    RETURN,
    THREAD_ID,
)
from cadenza.langgraph.types import PregelTask, StateSnapshot

if TYPE_CHECKING:
    from cadenza.langgraph.graph.compiled import CompiledStateGraph

__all__ = ("aget_state", "aget_state_history", "get_state", "get_state_history")

_NOT_STARTED = TaskStatus()


def saver_for(graph: CompiledStateGraph, config: Mapping[str, Any]) -> Any:
    conf = config.get(CONF) or {}
    saver = conf.get(CONFIG_KEY_CHECKPOINTER) or (
        graph.checkpointer if graph.checkpointer not in (None, True, False) else None
    )
    if saver is None:
        raise ValueError("No checkpointer set")
    flush_saver(saver)  # what runs handed to its background writer is read back
    return saver


def subgraph_for(graph: CompiledStateGraph, config: Mapping[str, Any]) -> Any:
    """The subgraph a namespaced config (from ``StateSnapshot.tasks[i].state``) names."""
    ns = config[CONF].get(CHECKPOINT_NS, "")
    if not ns or CONFIG_KEY_CHECKPOINTER in config[CONF]:
        return None
    target: Any = graph
    for part in ns.split("|"):
        if part.isdigit():
            continue
        node = target.nodes.get(part.split(":")[0])
        if node is None or node.subgraph is None:
            return None
        target = node.subgraph
    return target


def patch_map(config: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> Any:
    if config is None:
        return None
    if parents := (metadata or {}).get("parents"):
        conf = config[CONF]
        return patch_configurable(
            config, {CHECKPOINT_MAP: {**parents, conf[CHECKPOINT_NS]: conf[CHECKPOINT_ID]}}
        )
    return config


def bare_loop(
    graph: CompiledStateGraph, config: dict[str, Any], checkpoint: Any, step: int
) -> Loop:
    """A loop that is never started: tasks prepared for a snapshot or an update need one."""
    loop = Loop(
        graph,
        None,
        config,
        saver=None,
        modes=frozenset(),
        out=None,
        output_keys=graph.stream_channels,
        interrupt_before=(),
        interrupt_after=(),
    )
    loop.position.checkpoint = checkpoint
    loop.position.step = step
    loop.stop = step + 2
    return loop


def _snapshot(
    graph: CompiledStateGraph,
    config: Mapping[str, Any],
    saved: Any,
    saver: Any,
    *,
    live: bool,
    recurse: bool = False,
) -> StateSnapshot:
    if not saved:
        return StateSnapshot({}, (), dict(config), None, None, None, (), ())
    checkpoint = saved.checkpoint
    pending = [(str(t), c, v) for t, c, v in saved.pending_writes or ()]
    step = saved.metadata.get("step", -1) + 1
    channels = channels_from_checkpoint(graph.channels, checkpoint)
    loop = bare_loop(graph, ensure_config(saved.config), checkpoint, step)
    loop.channels = channels
    parent_ns = saved.config[CONF].get(CHECKPOINT_NS, "")
    tasks = prepare_tasks(
        checkpoint,
        pending,
        graph.nodes,
        channels,
        step=step,
        stop=step + 2,
        parent_ns=parent_ns,
        loop=loop,
        trigger_to_nodes=graph.trigger_to_nodes,
        updated_channels=None,
        read_inputs=False,
    )
    states: dict[str, Any] = {}
    for task in tasks.values():
        sub = task.node.subgraph
        if sub is None:
            continue
        sub_config = {CONF: {THREAD_ID: saved.config[CONF][THREAD_ID], CHECKPOINT_NS: task.ns}}
        if recurse:
            sub_config[CONF][CONFIG_KEY_CHECKPOINTER] = saver
            states[task.id] = sub.get_state(sub_config, subgraphs=True)
        else:
            states[task.id] = sub_config
    if null_writes := [w[1:] for w in pending if w[0] == NULL_TASK_ID]:
        apply_writes(
            checkpoint,
            channels,
            [WritesOf(INPUT, null_writes)],
            None,
            graph.trigger_to_nodes,
            graph.volatile,
            graph.finishing,
        )
    statuses = task_statuses(pending)
    if live and pending:
        for tid, status in statuses.items():
            if tid in tasks:
                tasks[tid].writes.extend(status.output)
        if done := [t for t in tasks.values() if t.writes]:
            apply_writes(
                checkpoint,
                channels,
                done,
                None,
                graph.trigger_to_nodes,
                graph.volatile,
                graph.finishing,
            )
    reported = tuple(
        _report(t, statuses, states, graph.stream_channels, live) for t in tasks.values()
    )
    return StateSnapshot(
        read_channels(channels, graph.stream_channels),
        tuple(t.name for t in tasks.values() if not t.writes),
        patch_map(saved.config, saved.metadata),
        saved.metadata,
        checkpoint["ts"],
        patch_map(saved.parent_config, saved.metadata),
        reported,
        tuple(i for t in reported for i in t.interrupts),
    )


def _report(
    task: Task,
    statuses: Mapping[str, TaskStatus],
    states: Mapping[str, Any],
    output_keys: Any,
    live: bool,
) -> PregelTask:
    status = statuses.get(task.id, _NOT_STARTED)
    returned = [v for c, v in status.output if c == RETURN]
    writes = [(c, v) for c, v in status.output if c != RETURN]
    if returned:
        result: Any = returned[0]
    elif isinstance(output_keys, str):
        folded = _fold([(c, v) for c, v in writes if c == output_keys])
        result = folded.get(output_keys) if folded else None
    else:
        chosen = [(c, v) for c, v in writes if c in output_keys]
        result = _fold(chosen) if chosen else {}
    return PregelTask(
        task.id,
        task.name,
        task.path,
        status.error,
        status.pending_interrupts if live else status.interrupts,
        states.get(task.id),
        result if status.finished else None,
    )


def _fold(writes: list[tuple[str, Any]]) -> dict[str, Any]:
    """Writes as a dict; a key written more than once becomes ``{"$writes": [...]}``."""
    out: dict[str, Any] = {}
    for chan, value in writes:
        existing = out.get(chan)
        if existing is not None:
            many = existing["$writes"] if _is_many(existing) else [existing]
            many.append(value)
            out[chan] = {"$writes": many}
        else:
            out[chan] = value
    return out


def _is_many(value: Any) -> bool:
    return isinstance(value, dict) and "$writes" in value and isinstance(value["$writes"], list)


def state_config(graph: CompiledStateGraph, config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = ensure_config(graph.config, config)
    if THREAD_ID in cfg[CONF] and not isinstance(cfg[CONF][THREAD_ID], str):
        cfg[CONF][THREAD_ID] = str(cfg[CONF][THREAD_ID])
    return cfg


def get_state(
    graph: CompiledStateGraph, config: Mapping[str, Any], *, subgraphs: bool = False
) -> StateSnapshot:
    saver = saver_for(graph, config)
    if (sub := subgraph_for(graph, config)) is not None:
        return sub.get_state(
            patch_configurable(config, {CONFIG_KEY_CHECKPOINTER: saver}), subgraphs=subgraphs
        )
    cfg = state_config(graph, config)
    saved = saver.get_tuple(cfg)
    return _snapshot(
        graph, cfg, saved, saver, live=CHECKPOINT_ID not in cfg[CONF], recurse=subgraphs
    )


async def aget_state(
    graph: CompiledStateGraph, config: Mapping[str, Any], *, subgraphs: bool = False
) -> StateSnapshot:
    saver = saver_for(graph, config)
    if (sub := subgraph_for(graph, config)) is not None:
        return await sub.aget_state(
            patch_configurable(config, {CONFIG_KEY_CHECKPOINTER: saver}), subgraphs=subgraphs
        )
    cfg = state_config(graph, config)
    saved = await saver.aget_tuple(cfg)
    return _snapshot(graph, cfg, saved, saver, live=CHECKPOINT_ID not in cfg[CONF])


def _history_config(graph: CompiledStateGraph, config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = state_config(graph, config)
    cfg[CONF][CHECKPOINT_NS] = cfg[CONF].get(CHECKPOINT_NS, "")
    return cfg


def get_state_history(
    graph: CompiledStateGraph,
    config: Mapping[str, Any],
    *,
    filter: dict[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> Iterator[StateSnapshot]:
    saver = saver_for(graph, config)
    if (sub := subgraph_for(graph, config)) is not None:
        yield from sub.get_state_history(
            patch_configurable(config, {CONFIG_KEY_CHECKPOINTER: saver}),
            filter=filter,
            before=before,
            limit=limit,
        )
        return
    cfg = _history_config(graph, config)
    for saved in list(saver.list(cfg, before=before, limit=limit, filter=filter)):
        yield _snapshot(graph, saved.config, saved, saver, live=False)


async def aget_state_history(
    graph: CompiledStateGraph,
    config: Mapping[str, Any],
    *,
    filter: dict[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> AsyncIterator[StateSnapshot]:
    saver = saver_for(graph, config)
    cfg = _history_config(graph, config)
    found = [s async for s in saver.alist(cfg, before=before, limit=limit, filter=filter)]
    for saved in found:
        yield _snapshot(graph, saved.config, saved, saver, live=False)
