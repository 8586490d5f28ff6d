"""Changing a thread's state through its checkpointer: ``update_state`` writes values as
if a node had returned them (or as input, or clears the pending tasks), sync and async."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._context import CURRENT
from cadenza.langgraph._engine.algo import WritesOf, apply_writes, prepare_tasks, task_path_str
from cadenza.langgraph._engine.checkpoint import (
    channels_from_checkpoint,
    copy_checkpoint,
    create_checkpoint,
    empty_checkpoint,
    new_versions,
)
from cadenza.langgraph._engine.loop_saver import accepts_task_path
from cadenza.langgraph._engine.pending import task_statuses
from cadenza.langgraph._engine.runconfig import ensure_config, patch_configurable
from cadenza.langgraph._engine.task import Task
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_NS,
    CONF,
    CONFIG_KEY_CHECKPOINTER,
    END,
    INPUT,
    INTERRUPT,
    NULL_TASK_ID,
    PUSH,
    START,
)
from cadenza.langgraph.errors import InvalidUpdateError

if TYPE_CHECKING:
    from cadenza.langgraph.graph.compiled import CompiledStateGraph

from cadenza.langgraph._engine.state_read import (
    bare_loop,
    patch_map,
    saver_for,
    state_config,
    subgraph_for,
)

__all__ = ("aupdate_state", "update_state")


def _infer_as_node(graph: CompiledStateGraph, versions_seen: Mapping[str, Any]) -> str | None:
    if len(graph.nodes) == 1:
        return next(iter(graph.nodes))
    seen = {k: v for k, v in versions_seen.items() if k != "__snapshot_bumps__"}
    if not any(v for vv in seen.values() for v in vv.values()):
        return START
    last = sorted((v, n) for n, s in seen.items() if n in graph.nodes for v in s.values())
    if len(last) == 1 or (last and last[-1][0] != last[-2][0]):
        return last[-1][1]
    return None


class _Update:
    """What an ``update_state`` call stores: computed from the loaded checkpoint, then
    saved by the sync or the async caller."""

    def __init__(self, graph: CompiledStateGraph, config: dict[str, Any], saved: Any, saver: Any):
        self.graph = graph
        self.saver = saver
        self.saved = saved
        self.checkpoint = copy_checkpoint(saved.checkpoint) if saved else empty_checkpoint()
        self.previous = dict(saved.checkpoint["channel_versions"]) if saved else {}
        self.step = saved.metadata.get("step", -1) if saved else -1
        self.config = patch_configurable(
            config, {CHECKPOINT_NS: config[CONF].get(CHECKPOINT_NS, "")}
        )
        if saved:
            self.config = patch_configurable(config, saved.config[CONF])
        self.channels = channels_from_checkpoint(graph.channels, self.checkpoint)
        self.parents = saved.metadata.get("parents", {}) if saved else {}
        self.stored: tuple[str, list[tuple[str, Any]], str | None] | None = None

    def writes_call(self) -> tuple[Any, ...] | None:
        """The ``put_writes`` arguments that file the update under the checkpoint it
        builds on, so that checkpoint's history shows it as its task's result."""
        if self.saved is None or self.stored is None or not self.stored[1]:
            return None
        task_id, writes, path = self.stored
        if path is not None and accepts_task_path(self.saver):
            return (self.config, writes, task_id, path)
        return (self.config, writes, task_id)

    def _apply(self, tasks: list[Any]) -> set[str]:
        g = self.graph
        return apply_writes(
            self.checkpoint,
            self.channels,
            tasks,
            self.saver.get_next_version,
            g.trigger_to_nodes,
            g.volatile,
            g.finishing,
        )

    def _next_tasks(self) -> dict[str, Task]:
        saved = self.saved
        loop = bare_loop(self.graph, ensure_config(saved.config), self.checkpoint, self.step + 1)
        loop.channels = self.channels
        return prepare_tasks(
            self.checkpoint,
            [(str(t), c, v) for t, c, v in saved.pending_writes or ()],
            self.graph.nodes,
            self.channels,
            step=self.step + 1,
            stop=self.step + 3,
            parent_ns=saved.config[CONF].get(CHECKPOINT_NS, ""),
            loop=loop,
            trigger_to_nodes=self.graph.trigger_to_nodes,
            updated_channels=None,
            read_inputs=False,
        )

    def plan(
        self, values: Any, as_node: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(checkpoint, metadata, new versions) to store."""
        saved = self.saved
        if values is None and as_node == END:
            if saved is not None:
                tasks = self._next_tasks()
                pending = saved.pending_writes or []
                if null_writes := [w[1:] for w in pending if w[0] == NULL_TASK_ID]:
                    self._apply([WritesOf(INPUT, null_writes)])
                for tid, status in task_statuses(pending).items():
                    if tid in tasks:
                        tasks[tid].writes.extend(status.output)
                self._apply(list(tasks.values()))
            return self._finish("update", self.step + 1, self.step)
        if as_node == INPUT:
            if values is None:
                raise InvalidUpdateError(f"Received no input writes for {START}")
            writes = [(START, values)]
            self.stored = (str(uuid.uuid5(uuid.UUID(self.checkpoint["id"]), INPUT)), writes, None)
            self._apply([WritesOf(INPUT, writes)])
            step = self.step + 1 if saved and saved.metadata.get("step") is not None else -1
            return self._finish("input", step, step)
        if as_node == "__copy__":
            raise InvalidUpdateError("update_state(as_node='__copy__') is not supported")
        if as_node is None:
            as_node = _infer_as_node(self.graph, self.checkpoint["versions_seen"])
        if as_node is None:
            raise InvalidUpdateError("Ambiguous update, specify as_node")
        node = self.graph.nodes.get(as_node)
        if node is None:
            raise InvalidUpdateError(f"Node {as_node} does not exist")
        task_id = str(uuid.uuid5(uuid.UUID(self.checkpoint["id"]), INTERRUPT))
        if saved is not None and saved.pending_writes is not None:
            for prepared in self._next_tasks().values():
                if prepared.name == as_node:
                    task_id = prepared.id
                    break
        loop = bare_loop(self.graph, self.config, self.checkpoint, self.step)
        loop.channels = self.channels
        task = Task(
            id=task_id,
            name=as_node,
            path=(INTERRUPT, 0),
            sort_key=(-1, (INTERRUPT, 0)),
            node=node,
            input=values,
            triggers=(INTERRUPT,),
            ns="",
            loop=loop,
            resume=[],
            null_resume=None,
        )
        token = CURRENT.set(task)
        try:
            node.produce(task, values)
        finally:
            CURRENT.reset(token)
        self.stored = (task_id, [w for w in task.writes if w[0] != PUSH], task_path_str(task.path))
        self._apply([task])
        return self._finish("update", self.step + 1, self.step + 1)

    def _finish(
        self, source: str, meta_step: int, id_step: int
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        checkpoint = create_checkpoint(self.checkpoint, self.channels, id_step)
        metadata = {"source": source, "step": meta_step, "parents": self.parents}
        return checkpoint, metadata, new_versions(self.previous, checkpoint["channel_versions"])


def _superseded(saver: Any, config: Mapping[str, Any], saved: Any) -> bool:
    """Whether the thread moved past the checkpoint ``config`` addressed."""
    if not config[CONF].get(CHECKPOINT_ID):
        return False
    latest = saver.get_tuple(patch_configurable(config, {CHECKPOINT_ID: None}))
    return latest is not None and latest.checkpoint["id"] != saved.checkpoint["id"]


def update_state(
    graph: CompiledStateGraph, config: Mapping[str, Any], values: Any, as_node: str | None
) -> dict[str, Any]:
    saver = saver_for(graph, config)
    if (sub := subgraph_for(graph, config)) is not None:
        return sub.update_state(
            patch_configurable(config, {CONFIG_KEY_CHECKPOINTER: saver}), values, as_node
        )
    cfg = state_config(graph, config)
    saved = saver.get_tuple(cfg)
    update = _Update(graph, cfg, saved, saver)
    checkpoint, metadata, moved = update.plan(values, as_node)
    if (call := update.writes_call()) is not None and not _superseded(saver, cfg, saved):
        saver.put_writes(*call)
    stored = saver.put(update.config, checkpoint, metadata, moved)
    return patch_map(stored, saved.metadata if saved else None)


async def aupdate_state(
    graph: CompiledStateGraph, config: Mapping[str, Any], values: Any, as_node: str | None
) -> dict[str, Any]:
    saver = saver_for(graph, config)
    cfg = state_config(graph, config)
    saved = await saver.aget_tuple(cfg)
    update = _Update(graph, cfg, saved, saver)
    checkpoint, metadata, moved = update.plan(values, as_node)
    if (call := update.writes_call()) is not None:
        latest = None
        if cfg[CONF].get(CHECKPOINT_ID):
            latest = await saver.aget_tuple(patch_configurable(cfg, {CHECKPOINT_ID: None}))
        if latest is None or latest.checkpoint["id"] == saved.checkpoint["id"]:
            await saver.aput_writes(*call)
    stored = await saver.aput(update.config, checkpoint, metadata, moved)
    return patch_map(stored, saved.metadata if saved else None)
