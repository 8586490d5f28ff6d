"""Where a run is: the checkpoint the next step starts from (its config, metadata and parent),
the writes recorded for it, and the step's number; and how the next checkpoint and the
writes are made and handed to the saver (:class:`~.loop_saver.SaverCalls`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.checkpoint import create_checkpoint, empty_checkpoint, new_versions
from cadenza.langgraph._engine.ids import uuid6
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_MAP,
    CHECKPOINT_NS,
    CONF,
    NULL_TASK_ID,
    SPECIAL_WRITES,
)

if TYPE_CHECKING:
    from cadenza.langgraph._engine.loop_saver import SaverCalls
    from cadenza.langgraph._engine.task import Task

__all__ = ("Position",)


class Position:
    """A run's position (see the module docstring). ``calls`` is ``None`` without a saver:
    checkpoints are then only numbered, never stored."""

    __slots__ = (
        "_writes_cfg", "calls", "checkpoint", "config", "durability", "metadata", "nested", "ns",
        "parent_config", "pending_writes", "prev_versions", "run_config", "saved_id", "step",
    )  # fmt: skip

    def __init__(
        self,
        config: dict[str, Any],
        ns: str,
        calls: SaverCalls | None,
        *,
        nested: bool,
        durability: str,
    ) -> None:
        self.run_config = config
        self.ns = ns
        self.calls = calls
        self.nested = nested
        self.durability = durability
        self.step = 0
        self.checkpoint: dict[str, Any] = {}
        self.config: dict[str, Any] = {}  # the checkpoint's (its id once it is stored)
        self.metadata: dict[str, Any] = {}
        self.parent_config: dict[str, Any] | None = None
        self.saved_id = ""  # the id of the checkpoint stored last
        self.prev_versions: dict[str, Any] = {}
        self.pending_writes: list[tuple[str, str, Any]] = []
        self._writes_cfg: tuple[str, dict[str, Any]] | None = None

    def load_config(self) -> dict[str, Any]:
        """The config the thread's latest checkpoint is read with."""
        conf = self.run_config[CONF]
        base = {**self.run_config, CONF: {CHECKPOINT_NS: self.ns, **conf}}
        if self.nested:
            base[CONF][CHECKPOINT_NS] = self.ns
            base[CONF][CHECKPOINT_ID] = None
        self.config = base
        return base

    def start(self, saved: Any) -> None:
        """Start from the loaded checkpoint tuple (``None`` for a new thread)."""
        base = self.config
        if saved is None:
            checkpoint = empty_checkpoint()
            self.metadata = {"step": -2}
            self.parent_config = None
            self.pending_writes = []
        else:
            checkpoint = saved.checkpoint
            self.config = {
                **base,
                **saved.config,
                CONF: {CHECKPOINT_NS: "", **base[CONF], **saved.config.get(CONF, {})},
            }
            self.metadata = dict(saved.metadata)
            self.parent_config = saved.parent_config
            self.pending_writes = [(str(t), c, v) for t, c, v in saved.pending_writes or ()]
        self.checkpoint = checkpoint
        self.saved_id = checkpoint["id"]
        self.step = self.metadata["step"] + 1
        self.prev_versions = dict(checkpoint["channel_versions"])

    def named_config(self) -> dict[str, Any]:
        """The checkpoint's config, naming it (the config a ``checkpoints`` chunk shows)."""
        cfg = self.config
        return {**cfg, CONF: {**cfg[CONF], CHECKPOINT_ID: self.checkpoint["id"]}}

    # -- writes --------------------------------------------------------------------------------

    def put_writes(
        self, task_id: str, writes: Sequence[tuple[str, Any]], task: Task | None
    ) -> Sequence[tuple[str, Any]]:
        """Record a task's writes for this step (and with the saver, durably); returns them
        as recorded (special writes once each)."""
        if all(w[0] in SPECIAL_WRITES for w in writes):
            writes = list({w[0]: w for w in writes}.values())
        pending = self.pending_writes
        to_save: Sequence[tuple[str, Any]]
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
        calls = self.calls
        if calls is not None and self.durability != "exit":
            calls.put_writes(self.writes_config(), list(to_save), task_id, task)
        return writes

    def writes_config(self) -> dict[str, Any]:
        """The config that files writes under the current checkpoint (one per checkpoint)."""
        cached = self._writes_cfg
        if cached is not None and cached[0] == self.checkpoint["id"]:
            return cached[1]
        config = {
            **self.config,
            CONF: {
                **self.config[CONF],
                CHECKPOINT_NS: self.ns,
                CHECKPOINT_ID: self.checkpoint["id"],
            },
        }
        self._writes_cfg = (self.checkpoint["id"], config)
        return config

    def put_pending_writes(self, tasks: dict[str, Task]) -> None:
        """Store the writes recorded for the checkpoint (``"exit"`` durability, at the end)."""
        calls = self.calls
        if calls is None or not self.pending_writes:
            return
        config = self.writes_config()
        by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for tid, chan, value in self.pending_writes:
            by_task[tid].append((chan, value))
        for tid, writes in by_task.items():
            calls.put_writes(config, writes, tid, tasks.get(tid))

    # -- checkpoints ---------------------------------------------------------------------------

    def put_checkpoint(
        self,
        metadata: dict[str, Any] | None,
        channels: dict[str, Any],
        updated_channels: set[str] | None,
    ) -> None:
        """Make the checkpoint that ends the step (its ``metadata``; ``None``: the current
        one again, stored at the end with ``"exit"`` durability), hand it to the saver, and
        go on to the next step."""
        exiting = metadata is None
        if exiting and self.checkpoint["id"] == self.saved_id:
            return
        if metadata is not None:
            metadata["step"] = self.step
            metadata["parents"] = self.run_config[CONF].get(CHECKPOINT_MAP, {})
            self.metadata = metadata
        calls = self.calls
        if calls is None or (not exiting and self.durability == "exit"):
            self.checkpoint["id"] = uuid6(clock_seq=self.step)
            if not exiting:
                self.step += 1
            return
        self.checkpoint = checkpoint = create_checkpoint(
            self.checkpoint,
            channels,
            self.step,
            id=self.checkpoint["id"] if exiting else None,
            updated_channels=updated_channels,
        )
        cfg = self.config
        if cfg[CONF].get(CHECKPOINT_ID):
            self.parent_config = cfg
        put_config = {**cfg, CONF: {**cfg[CONF], CHECKPOINT_NS: self.ns}}
        versions = checkpoint["channel_versions"]
        moved = new_versions(self.prev_versions, versions)
        self.prev_versions = dict(versions)
        calls.put(put_config, checkpoint, self.metadata, moved)
        if calls.behind_the_run:
            # the writer stores ``checkpoint`` later: the next step changes a copy of it
            self.checkpoint = {
                **checkpoint,
                "channel_versions": dict(versions),
                "versions_seen": dict(checkpoint["versions_seen"]),
            }
        self.config = {**put_config, CONF: {**put_config[CONF], CHECKPOINT_ID: checkpoint["id"]}}
        self.saved_id = checkpoint["id"]
        if not exiting:
            self.step += 1
