"""What the ``tasks``, ``checkpoints`` and ``debug`` stream modes show: a task starting, a
task's result, the checkpoint a step starts from, and the ``debug`` wrapping of those, in
LangGraph's format. Only built when one of these modes is streamed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.emit import read_channels
from cadenza.langgraph._engine.pending import TaskStatus, task_statuses
from cadenza.langgraph._engine.runconfig import patch_configurable
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_MAP,
    CHECKPOINT_NS,
    CONF,
    ERROR,
    INTERRUPT,
    RETURN,
    THREAD_ID,
)

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task
    from cadenza.langgraph.channels.base import BaseChannel

__all__ = ("checkpoint_payload", "debug_event", "fold_writes", "task_payload", "task_result")

# run-placement keys LangGraph leaves out of a task's metadata (its id, name and namespace
# say the same); everything else the node's config carries is shown
_PLACEMENT_KEYS = frozenset(
    (
        THREAD_ID,
        CHECKPOINT_ID,
        CHECKPOINT_NS,
        CHECKPOINT_MAP,
        "langgraph_step",
        "langgraph_node",
        "langgraph_triggers",
        "langgraph_path",
        "langgraph_checkpoint_ns",
    )
)
_NOT_STARTED = TaskStatus()


def task_payload(task: Task) -> dict[str, Any]:
    """A task starting: its id, name, input and triggers, and the user metadata and tags
    its config carries (when there are any)."""
    payload: dict[str, Any] = {
        "id": task.id,
        "name": task.name,
        "input": task.input,
        "triggers": task.triggers,
    }
    config = task.config
    metadata = {k: v for k, v in config["metadata"].items() if k not in _PLACEMENT_KEYS}
    tags = [t for t in config.get("tags") or () if not t.startswith("seq:step")]
    if tags:
        metadata["tags"] = tags
    if metadata:
        payload["metadata"] = metadata
    return payload


def task_result(
    task: Task, writes: Sequence[tuple[str, Any]], stream_keys: Sequence[str] | str
) -> dict[str, Any]:
    """A task finished: its error, its writes to the state's keys, its interrupts."""
    keys = (stream_keys,) if isinstance(stream_keys, str) else stream_keys
    return {
        "id": task.id,
        "name": task.name,
        "error": next((v for c, v in writes if c == ERROR), None),
        "result": fold_writes([(c, v) for c, v in writes if c in keys or c == RETURN]),
        "interrupts": [
            asdict(i)
            for c, v in writes
            if c == INTERRUPT
            for i in (v if isinstance(v, Sequence) else (v,))
        ],
    }


def fold_writes(writes: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Writes as a dict; a key written more than once becomes ``{"$writes": [...]}``."""
    out: dict[str, Any] = {}
    for chan, value in writes:
        existing = out.get(chan)
        if existing is None:
            out[chan] = value
            continue
        many = existing.get("$writes") if isinstance(existing, dict) else None
        if not isinstance(many, list):
            many = [existing]
        many.append(value)
        out[chan] = {"$writes": many}
    return out


def checkpoint_payload(
    config: Mapping[str, Any],
    parent_config: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
    channels: Mapping[str, BaseChannel],
    stream_keys: Sequence[str] | str,
    output_keys: Sequence[str] | str,
    tasks: Iterable[Task],
    pending_writes: Sequence[tuple[str, str, Any]],
) -> dict[str, Any]:
    """The checkpoint a step starts from, as ``get_state`` would show it: its config and
    its parent's, the state, the metadata, the tasks it runs next and what they recorded."""
    tasks = list(tasks)
    statuses = task_statuses(pending_writes)
    thread = config[CONF].get(THREAD_ID)
    return {
        "config": _public(_with_map(config, metadata)),
        "parent_config": _public(_with_map(parent_config, metadata)),
        "values": read_channels(channels, stream_keys),
        "metadata": metadata,
        "next": [t.name for t in tasks],
        "tasks": [
            _task_state(t, statuses.get(t.id, _NOT_STARTED), output_keys, thread) for t in tasks
        ],
    }


def _task_state(
    task: Task, status: TaskStatus, output_keys: Sequence[str] | str, thread: Any
) -> dict[str, Any]:
    """One task of a checkpoint: its error, or its result (when it finished with one) and
    interrupts; ``state`` points at its subgraph's checkpoints when it runs one."""
    state = (
        {CONF: {THREAD_ID: thread, CHECKPOINT_NS: task.ns}}
        if task.node.subgraph is not None
        else None
    )
    if status.error:
        return {"id": task.id, "name": task.name, "error": status.error, "state": state}
    interrupts = tuple(asdict(i) for i in status.interrupts)
    result = _task_output(status, output_keys) if status.finished else None
    if result:
        return {
            "id": task.id,
            "name": task.name,
            "result": result,
            "interrupts": interrupts,
            "state": state,
        }
    return {"id": task.id, "name": task.name, "interrupts": interrupts, "state": state}


def _task_output(status: TaskStatus, output_keys: Sequence[str] | str) -> Any:
    """A finished task's output: what it returned, else its writes to the output keys."""
    returned = [v for c, v in status.output if c == RETURN]
    if returned:
        return returned[0]
    writes = [(c, v) for c, v in status.output if c != RETURN]
    if isinstance(output_keys, str):
        folded = fold_writes((c, v) for c, v in writes if c == output_keys)
        return folded.get(output_keys) if folded else None
    return fold_writes((c, v) for c, v in writes if c in output_keys)


def _with_map(config: Mapping[str, Any] | None, metadata: Mapping[str, Any]) -> Any:
    """``config`` with the checkpoint map that places it under its parents' checkpoints."""
    if config is None:
        return None
    if parents := metadata.get("parents"):
        conf = config[CONF]
        return patch_configurable(
            config, {CHECKPOINT_MAP: {**parents, conf[CHECKPOINT_NS]: conf[CHECKPOINT_ID]}}
        )
    return config


def _public(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Only ``configurable``, without the engine's own entries."""
    if config is None:
        return None
    conf = config.get(CONF, {})
    return {CONF: {k: v for k, v in conf.items() if not k.startswith("__pregel_")}}


def debug_event(mode: str, step: int, payload: dict[str, Any]) -> dict[str, Any]:
    """A ``checkpoints`` or ``tasks`` event as the ``debug`` mode wraps it."""
    if mode == "checkpoints":
        kind = "checkpoint"
    else:
        kind = "task_result" if "result" in payload else "task"
    return {
        "step": step,
        "timestamp": datetime.now(UTC).isoformat(),
        "type": kind,
        "payload": payload,
    }
