"""Pure step logic: which tasks run next, and how a step's writes change the channels.

Plain functions over a checkpoint dict, channel objects and compiled nodes; no I/O. The
rules are LangGraph's: a node runs when one of its trigger channels holds a version it has
not seen; a step's writes are applied together, ordered by task path, after all its tasks
finished; pending ``Send`` packets become one task each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import copy
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.ids import checkpoint_id_bytes, interrupt_id, task_id
from cadenza.langgraph._engine.task import NullResume, Task
from cadenza.langgraph._keys import (
    INTERRUPT,
    MISSING,
    NOT_STATE,
    NS_END,
    NS_SEP,
    NULL_TASK_ID,
    PULL,
    PUSH,
    RESERVED,
    RESUME,
    TAG_HIDDEN,
    TASKS,
)
from cadenza.langgraph.types import Send

if TYPE_CHECKING:
    from cadenza.langgraph._engine.node import Node
    from cadenza.langgraph.channels.base import BaseChannel

logger = logging.getLogger("cadenza.langgraph")

__all__ = (
    "apply_writes",
    "null_version",
    "prepare_tasks",
    "should_interrupt",
    "task_path_str",
)

GetNextVersion = Callable[[Any, None], Any]


def increment(current: int | None, _channel: None = None) -> int:
    """Channel versions without a checkpointer: integers counting up."""
    return current + 1 if current is not None else 1


def task_path_str(path: Any) -> str:
    """The sortable string form of a task path (ints zero-padded), as savers store it."""
    if isinstance(path, (tuple, list)):
        return "~" + ", ".join(task_path_str(x) for x in path)
    if isinstance(path, int):
        return f"{path:010d}"
    return str(path)


def null_version(checkpoint: Mapping[str, Any]) -> Any:
    for version in checkpoint["channel_versions"].values():
        return type(version)()
    return None


class WritesOf:
    """Writes that come from no task (input, ``update_state``), shaped like a task."""

    __slots__ = ("name", "path", "sort_key", "triggers", "writes")

    def __init__(
        self,
        name: str,
        writes: Sequence[tuple[str, Any]],
        triggers: Sequence[str] = (),
        path: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self.writes = writes
        self.triggers = triggers
        self.path = path
        self.sort_key = (-1, path)


def apply_writes(
    checkpoint: dict[str, Any],
    channels: Mapping[str, BaseChannel],
    tasks: Iterable[Task | WritesOf],
    get_next_version: GetNextVersion | None,
    trigger_to_nodes: Mapping[str, Sequence[str]],
    volatile: Sequence[str],
    finishing: Sequence[str],
) -> set[str]:
    """Apply one step's writes to ``channels`` and bump versions in ``checkpoint``; return
    the channels that now hold a new, readable value.

    ``volatile`` channels may change on a step without writes (they clear), ``finishing``
    ones when the run would end; the rest are skipped in those passes."""
    tasks = sorted(tasks, key=_sort_key) if not isinstance(tasks, list) or len(tasks) > 1 else tasks
    bump_step = False
    versions = checkpoint["channel_versions"]
    seen_all = checkpoint["versions_seen"]
    # the inner dicts are replaced, never changed, so a stored checkpoint can share them
    for task in tasks:
        triggers = task.triggers
        if triggers:
            bump_step = True
            seen = dict(seen_all.get(task.name) or ())
            for chan in triggers:
                if chan in versions:
                    seen[chan] = versions[chan]
            seen_all[task.name] = seen
        elif task.name not in seen_all:
            seen_all[task.name] = {}
    next_version = (
        None
        if get_next_version is None
        else get_next_version(max(versions.values()) if versions else None, None)
    )
    for task in tasks:
        for chan in task.triggers:
            if (
                chan not in RESERVED
                and chan in channels
                and channels[chan].consume()
                and next_version is not None
            ):
                versions[chan] = next_version
    by_channel: dict[str, list[Any]] = {}
    for task in tasks:
        for chan, value in task.writes:
            if chan in NOT_STATE:
                continue
            if chan in channels:
                if chan in by_channel:
                    by_channel[chan].append(value)
                else:
                    by_channel[chan] = [value]
            else:
                logger.warning(
                    "Task %s with path %s wrote to unknown channel %s, ignoring it.",
                    task.name,
                    task.path,
                    chan,
                )
    updated: set[str] = set()
    for chan, values in by_channel.items():
        ch = channels[chan]
        if ch.update(values) and next_version is not None:
            versions[chan] = next_version
            if ch.is_available():
                updated.add(chan)
    if bump_step:
        for chan in volatile:
            if chan in updated:
                continue
            ch = channels[chan]
            if ch.is_available() and ch.update(()) and next_version is not None:
                versions[chan] = next_version
                if ch.is_available():
                    updated.add(chan)
        if finishing and updated.isdisjoint(trigger_to_nodes):
            for chan in finishing:
                ch = channels[chan]
                if ch.finish() and next_version is not None:
                    versions[chan] = next_version
                    if ch.is_available():
                        updated.add(chan)
    return updated


def _sort_key(task: Task | WritesOf) -> tuple[int, Any]:
    return task.sort_key


def should_interrupt(
    checkpoint: Mapping[str, Any], nodes: Any, tasks: Iterable[Task]
) -> list[Task]:
    """Tasks to stop before (or after) when a channel changed since the last interrupt."""
    versions = checkpoint["channel_versions"]
    seen = checkpoint["versions_seen"].get(INTERRUPT, {})
    null = null_version(checkpoint)
    if not any(v > seen.get(chan, null) for chan, v in versions.items()):
        return []
    if nodes == "*":
        return [t for t in tasks if not t.node.hidden and TAG_HIDDEN not in t.node.tags]
    return [t for t in tasks if t.name in nodes]


def prepare_tasks(
    checkpoint: dict[str, Any],
    pending_writes: list[tuple[str, str, Any]],
    nodes: Mapping[str, Node],
    channels: Mapping[str, BaseChannel],
    *,
    step: int,
    stop: int,
    parent_ns: str,
    loop: Any,
    trigger_to_nodes: Mapping[str, Sequence[str]],
    updated_channels: set[str] | None,
    resume_map: Mapping[str, Any] | None = None,
    parent_null_resume: NullResume | None = None,
    read_inputs: bool = True,
) -> dict[str, Task]:
    """The tasks of the next step: one per pending ``Send`` (in order), then one per
    triggered node (in name order when the updated channels are known)."""
    id_bytes = checkpoint_id_bytes(checkpoint["id"])
    null = null_version(checkpoint)
    null_resume: NullResume | None = None
    if pending_writes or parent_null_resume is not None:
        write = next((w for w in pending_writes if w[0] == NULL_TASK_ID and w[1] == RESUME), None)
        null_resume = NullResume(write, pending_writes, parent_null_resume)
    context = _Prep(id_bytes, pending_writes, step, stop, parent_ns, loop, resume_map, null_resume)
    tasks: list[Task] = []
    topic = channels.get(TASKS)
    if topic is not None and topic.is_available():
        for idx, packet in enumerate(topic.get()):
            if (task := context.push(idx, packet, nodes)) is not None:
                tasks.append(task)
    if updated_channels and trigger_to_nodes:
        triggered: set[str] = set()
        for chan in updated_channels:
            if names := trigger_to_nodes.get(chan):
                triggered.update(names)
        candidates: Iterable[str] = sorted(triggered)
    elif not checkpoint["channel_versions"]:
        candidates = ()
    else:
        candidates = nodes.keys()
    versions = checkpoint["channel_versions"]
    seen_all = checkpoint["versions_seen"]
    cache: dict[Any, Any] = {}
    for name in candidates:
        node = nodes.get(name)
        if node is None or null is None:
            continue
        seen = seen_all.get(name)
        if seen is None:
            fired = any(channels[c].is_available() for c in node.triggers)
        else:
            fired = any(
                channels[c].is_available() and versions.get(c, null) > seen.get(c, null)
                for c in node.triggers
            )
        if fired:
            task = context.pull(node, channels, cache, read_inputs)
            if task is not None:
                tasks.append(task)
    return {t.id: t for t in tasks}


class _Prep:
    """What every task of one step shares while it is being prepared."""

    __slots__ = (
        "id_bytes",
        "loop",
        "null_resume",
        "parent_ns",
        "pending_writes",
        "resume_map",
        "step",
        "step_str",
        "stop",
    )

    def __init__(
        self,
        id_bytes: bytes,
        pending_writes: list[tuple[str, str, Any]],
        step: int,
        stop: int,
        parent_ns: str,
        loop: Any,
        resume_map: Mapping[str, Any] | None,
        null_resume: NullResume | None,
    ) -> None:
        self.id_bytes = id_bytes
        self.pending_writes = pending_writes
        self.step = step
        self.step_str = str(step)
        self.stop = stop
        self.parent_ns = parent_ns
        self.loop = loop
        self.resume_map = resume_map
        self.null_resume = null_resume

    def _resume(self, tid: str, task_ns: str) -> list[Any]:
        if not self.pending_writes:
            return []
        resume: list[Any] = []
        for w in self.pending_writes:
            if w[0] == tid and w[1] == RESUME:
                resume = list(w[2]) if isinstance(w[2], list) else [w[2]]
                break
        if self.resume_map:
            next_id = interrupt_id(task_ns, len(resume))
            if next_id in self.resume_map:
                resume.append(self.resume_map[next_id])
            elif (first := interrupt_id(task_ns, 0)) in self.resume_map:
                resume.append(self.resume_map[first])
        return resume

    def _ns(self, name: str) -> str:
        return f"{self.parent_ns}{NS_SEP}{name}" if self.parent_ns else name

    def push(self, idx: int, packet: Any, nodes: Mapping[str, Node]) -> Task | None:
        if not isinstance(packet, Send) and not (
            hasattr(packet, "node") and hasattr(packet, "arg")
        ):
            logger.warning("Ignoring invalid packet type %s in pending sends", type(packet))
            return None
        node = nodes.get(packet.node)
        if node is None:
            logger.warning("Ignoring unknown node name %s in pending sends", packet.node)
            return None
        ns = self._ns(packet.node)
        tid = task_id(self.id_bytes, ns, self.step_str, packet.node, PUSH, str(idx))
        task_ns = f"{ns}{NS_END}{tid}"
        return Task(
            id=tid,
            name=packet.node,
            path=(PUSH, idx, False),
            sort_key=(1, idx),
            node=node,
            input=packet.arg,
            triggers=(PUSH,),
            ns=task_ns,
            loop=self.loop,
            resume=self._resume(tid, task_ns),
            null_resume=self.null_resume,
        )

    def pull(
        self, node: Node, channels: Mapping[str, BaseChannel], cache: dict[Any, Any], read: bool
    ) -> Task | None:
        name = node.name
        value: Any = None
        if read:
            value = _node_input(node, channels, cache, self.step, self.stop)
            if value is MISSING:
                return None
        triggers = tuple(sorted(node.triggers))
        ns = self._ns(name)
        tid = task_id(self.id_bytes, ns, self.step_str, name, PULL, *triggers)
        task_ns = f"{ns}{NS_END}{tid}"
        return Task(
            id=tid,
            name=name,
            path=(PULL, name),
            sort_key=(0, name),
            node=node,
            input=value,
            triggers=triggers,
            ns=task_ns,
            loop=self.loop,
            resume=self._resume(tid, task_ns),
            null_resume=self.null_resume,
        )


def _node_input(
    node: Node, channels: Mapping[str, BaseChannel], cache: dict[Any, Any], step: int, stop: int
) -> Any:
    """A pulled node's input: the values it reads, shaped by its schema. Tasks reading the
    same keys share one read and get shallow copies."""
    key = node.input_key
    if key in cache:
        return copy(cache[key])
    reads = node.reads
    if isinstance(reads, str):
        ch = channels.get(reads)
        if ch is None or not ch.is_available():
            return MISSING
        value = ch.get()
    else:
        value = {}
        managed = node.managed
        for chan in reads:
            ch = channels.get(chan)
            if ch is not None:
                if ch.is_available():
                    value[chan] = ch.get()
            elif chan in managed:
                value[chan] = managed[chan].get(step, stop)
    if node.mapper is not None:
        value = node.mapper(value)
    cache[key] = value
    return value
