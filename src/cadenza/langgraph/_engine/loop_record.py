"""How a run records what happens: task writes (to the saver and to the stream), how each
task ended, the checkpoint after each step. Part of ``Loop``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from inspect import signature
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.algo import task_path_str
from cadenza.langgraph._engine.checkpoint import create_checkpoint, new_versions
from cadenza.langgraph._engine.debug import (
    checkpoint_payload,
    debug_event,
    task_payload,
    task_result,
)
from cadenza.langgraph._engine.emit import read_channels, task_updates
from cadenza.langgraph._engine.ids import uuid6
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_MAP,
    CHECKPOINT_NS,
    CONF,
    CONTROL_WRITES,
    ERROR,
    INTERRUPT,
    NO_WRITES,
    NULL_TASK_ID,
    RESUME,
    SPECIAL_WRITES,
)
from cadenza.langgraph.errors import GraphBubbleUp, GraphInterrupt

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cadenza.langgraph._engine.cache import CacheKey, NodeCache
    from cadenza.langgraph._engine.task import Task
    from cadenza.langgraph._engine.writeback import AsyncWriteBehind, WriteBehind

__all__ = ("Recorder", "accepts_task_path")

_ACCEPTS_PATH: dict[type, bool] = {}


def accepts_task_path(saver: Any) -> bool:
    cls = type(saver)
    if cls not in _ACCEPTS_PATH:
        try:
            _ACCEPTS_PATH[cls] = "task_path" in signature(saver.put_writes).parameters
        except (TypeError, ValueError):
            _ACCEPTS_PATH[cls] = False
    return _ACCEPTS_PATH[cls]


class Recorder:
    """The recording half of ``Loop`` (which defines the attributes used here)."""

    saver: Any
    writer: WriteBehind | None
    behind: AsyncWriteBehind | None
    durability: str
    ns: str
    ns_tuple: tuple[str, ...]
    tasks: dict[str, Task]
    pending_writes: list[tuple[str, str, Any]]
    checkpoint: dict[str, Any]
    checkpoint_config: dict[str, Any]
    checkpoint_metadata: dict[str, Any]
    checkpoint_id_saved: str
    prev_checkpoint_config: dict[str, Any] | None
    prev_versions: dict[str, Any]
    put_writes_path: bool
    want_updates: bool
    want_values: bool
    want_tasks: bool
    want_checkpoints: bool
    modes: frozenset[str]
    stream_keys: Sequence[str] | str
    output_seen: bool
    interrupts: list[Any]
    output_keys: Sequence[str] | str
    channels: dict[str, Any]
    updated_channels: set[str] | None
    out: Any
    config: dict[str, Any]
    step: int
    _writes_cfg: tuple[str, dict[str, Any]] | None
    cache: NodeCache | None
    cache_keys: dict[str, CacheKey]

    def _save(self, method: str, *args: Any) -> None:
        raise NotImplementedError

    def store_cached(self, key: CacheKey, writes: list[tuple[str, Any]]) -> None:
        raise NotImplementedError

    def put_writes(
        self, task_id: str, writes: Sequence[tuple[str, Any]], cached: bool = False
    ) -> None:
        """Record a task's writes for this step (and with the saver, durably); ``cached``
        writes were found in the node cache instead of made by running the node."""
        if not writes:
            return
        if all(w[0] in SPECIAL_WRITES for w in writes):
            writes = list({w[0]: w for w in writes}.values())
        pending = self.pending_writes
        if task_id == NULL_TASK_ID:
            self.pending_writes = pending = [
                w for w in pending if w[0] != task_id or w[1] not in SPECIAL_WRITES
            ]
            writes = sorted(writes, key=lambda w: w[0] in SPECIAL_WRITES)
            to_save = [w[1:] for w in pending if w[0] == task_id] + list(writes)
        else:
            if pending:
                self.pending_writes = pending = [w for w in pending if w[0] != task_id]
            to_save = writes
        pending.extend((task_id, c, v) for c, v in writes)
        saver = self.saver
        if saver is not None and self.durability != "exit":
            config = self._writes_config()
            if self.put_writes_path:
                task = self.tasks.get(task_id)
                path = task_path_str(task.path) if task is not None else ""
                self._save("put_writes", config, list(to_save), task_id, path)
            else:
                self._save("put_writes", config, list(to_save), task_id)
        task = self.tasks.get(task_id)
        if task is not None:
            self.output_writes(task, writes, cached)

    def _writes_config(self) -> dict[str, Any]:
        """The config that files writes under the current checkpoint (one per checkpoint)."""
        cached = self._writes_cfg
        if cached is not None and cached[0] == self.checkpoint["id"]:
            return cached[1]
        config = {
            **self.checkpoint_config,
            CONF: {
                **self.checkpoint_config[CONF],
                CHECKPOINT_NS: self.ns,
                CHECKPOINT_ID: self.checkpoint["id"],
            },
        }
        self._writes_cfg = (self.checkpoint["id"], config)
        return config

    def commit(self, task: Task, exc: BaseException | None) -> None:
        """Record how a task ended: its writes, its interrupt, or its error."""
        if exc is None:
            if all(c in CONTROL_WRITES for c, _ in task.writes):
                task.writes.append((NO_WRITES, None))
            self.put_writes(task.id, task.writes)
            if self.cache is not None and (key := self.cache_keys.get(task.id)) is not None:
                self.store_cached(key, task.writes)
        elif isinstance(exc, GraphInterrupt):
            if exc.args and exc.args[0]:
                writes: list[tuple[str, Any]] = [(INTERRUPT, exc.args[0])]
                writes.extend(w for w in task.writes if w[0] == RESUME)
                self.put_writes(task.id, writes)
        elif not isinstance(exc, GraphBubbleUp):
            task.writes.append((ERROR, exc))
            self.put_writes(task.id, task.writes)

    def output_writes(
        self, task: Task, writes: Sequence[tuple[str, Any]], cached: bool = False
    ) -> None:
        if task.hidden:
            return
        first = writes[0][0]
        if first == INTERRUPT:
            found = tuple(
                v
                for c, w in writes
                if c == INTERRUPT
                for v in (w if isinstance(w, Sequence) else (w,))
            )
            self.interrupts.extend(found)
            self.output_seen = True
            if self.want_updates:
                self._put("updates", {INTERRUPT: found})
            if self.want_values:
                current = read_channels(self.channels, self.output_keys)
                if isinstance(current, dict):
                    current[INTERRUPT] = found
                    self._put("values", current)
                else:
                    self._put("values", {INTERRUPT: found})
        elif first != ERROR and self.want_updates:
            chunk = task_updates(self.output_keys, [(task, writes)], cached)
            if chunk is not None:
                self._put("updates", chunk)
        if self.want_tasks and not cached:
            self._put_debug("tasks", task_result(task, writes, self.stream_keys))

    def values_changed(self) -> None:
        self.output_seen = True
        if self.want_values:
            self._put("values", read_channels(self.channels, self.output_keys))

    def _put(self, mode: str, payload: Any) -> None:
        assert self.out is not None
        self.out.append((self.ns_tuple, mode, payload))

    def tasks_started(self, tasks: Iterable[Task]) -> None:
        """Stream the step's tasks as they start (``tasks``/``debug``); hidden ones (the
        graph's own input task) are not shown."""
        for task in tasks:
            if not task.hidden:
                self._put_debug("tasks", task_payload(task))

    def checkpoint_started(self, tasks: Iterable[Task]) -> None:
        """Stream the checkpoint the step about to run starts from (``checkpoints``/
        ``debug``), with ``tasks`` as its next tasks. Built from the loop's own state: with
        "async" durability the saver may not have stored it yet."""
        cfg = self.checkpoint_config
        config = {**cfg, CONF: {**cfg[CONF], CHECKPOINT_ID: self.checkpoint["id"]}}
        payload = checkpoint_payload(
            config,
            self.prev_checkpoint_config,
            self.checkpoint_metadata,
            self.channels,
            self.stream_keys,
            self.output_keys,
            tasks,
            self.pending_writes,
        )
        self._put_debug("checkpoints", payload)

    def _put_debug(self, mode: str, payload: dict[str, Any]) -> None:
        """Stream a ``tasks`` or ``checkpoints`` event, and its ``debug`` form when that
        mode is asked for (a checkpoint belongs to the step that stored it)."""
        if mode in self.modes:
            self._put(mode, payload)
        if "debug" in self.modes:
            step = self.step - 1 if mode == "checkpoints" else self.step
            self._put("debug", debug_event(mode, step, payload))

    # ------------------------------------------------------------------ checkpoints

    def put_checkpoint(self, metadata: dict[str, Any]) -> None:
        exiting = metadata is self.checkpoint_metadata
        if exiting and self.checkpoint["id"] == self.checkpoint_id_saved:
            return
        if not exiting:
            metadata["step"] = self.step
            metadata["parents"] = self.config[CONF].get(CHECKPOINT_MAP, {})
            self.checkpoint_metadata = metadata
        saver = self.saver
        if saver is None or (not exiting and self.durability == "exit"):
            self.checkpoint["id"] = uuid6(clock_seq=self.step)
            if not exiting:
                self.step += 1
            return
        self.checkpoint = checkpoint = create_checkpoint(
            self.checkpoint,
            self.channels,
            self.step,
            id=self.checkpoint["id"] if exiting else None,
            updated_channels=self.updated_channels,
        )
        cfg = self.checkpoint_config
        if cfg[CONF].get(CHECKPOINT_ID):
            self.prev_checkpoint_config = cfg
        put_config = {**cfg, CONF: {**cfg[CONF], CHECKPOINT_NS: self.ns}}
        versions = checkpoint["channel_versions"]
        moved = new_versions(self.prev_versions, versions)
        self.prev_versions = dict(versions)
        self._save("put", put_config, checkpoint, self.checkpoint_metadata, moved)
        if self.writer is not None or self.behind is not None:
            # the writer stores ``checkpoint`` later: the next step changes a copy of it
            self.checkpoint = {
                **checkpoint,
                "channel_versions": dict(versions),
                "versions_seen": dict(checkpoint["versions_seen"]),
            }
        self.checkpoint_config = {
            **put_config,
            CONF: {**put_config[CONF], CHECKPOINT_ID: checkpoint["id"]},
        }
        self.checkpoint_id_saved = checkpoint["id"]
        if not exiting:
            self.step += 1

    # ------------------------------------------------------------------ end

    def _put_pending_writes(self) -> None:
        saver = self.saver
        if saver is None or not self.pending_writes:
            return
        config = self._writes_config()
        by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for tid, chan, value in self.pending_writes:
            by_task[tid].append((chan, value))
        for tid, writes in by_task.items():
            if self.put_writes_path:
                task = self.tasks.get(tid)
                self._save(
                    "put_writes", config, writes, tid, task_path_str(task.path) if task else ""
                )
            else:
                self._save("put_writes", config, writes, tid)

    # ------------------------------------------------------------------ for tasks
