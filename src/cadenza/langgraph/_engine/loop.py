"""One run of a graph: load the thread's checkpoint, apply the input (or a ``Command``),
then step by step prepare the tasks, apply their writes once a driver (``drive.py``) has
run them, and store a checkpoint. This module owns the state between steps; recording
(``loop_record.py``) and what nodes can reach (``loop_services.py``) are its two halves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.algo import (
    WritesOf,
    apply_writes,
    increment,
    prepare_tasks,
    should_interrupt,
)
from cadenza.langgraph._engine.checkpoint import (
    channels_from_checkpoint,
    empty_checkpoint,
)
from cadenza.langgraph._engine.emit import read_channels
from cadenza.langgraph._engine.ids import is_interrupt_id
from cadenza.langgraph._engine.loop_record import Recorder, accepts_task_path
from cadenza.langgraph._engine.loop_services import TaskServices
from cadenza.langgraph._engine.pending import pending_interrupts
from cadenza.langgraph._engine.writeback import AsyncWriteBehind, Owner, writer_for
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_NS,
    CONF,
    CONTROL_WRITES,
    INPUT,
    INTERRUPT,
    NS_SEP,
    NULL_TASK_ID,
    RESUME,
    START,
    TASKS,
)
from cadenza.langgraph.errors import (
    EmptyInputError,
    GraphInterrupt,
    InvalidUpdateError,
)
from cadenza.langgraph.types import Command, Interrupt, Send

if TYPE_CHECKING:
    from cadenza.langgraph._engine.cache import CacheKey
    from cadenza.langgraph._engine.task import NullResume, Task
    from cadenza.langgraph.graph.compiled import CompiledStateGraph

__all__ = ("Loop",)

Chunk = tuple[tuple[str, ...], str, Any]


def map_command(cmd: Command) -> Iterator[tuple[str, str, Any]]:
    """The writes a ``Command`` given as input makes, as (task id, channel, value)."""
    if cmd.graph == Command.PARENT:
        raise InvalidUpdateError("There is no parent graph")
    if cmd.goto:
        for target in cmd.goto if isinstance(cmd.goto, (tuple, list)) else [cmd.goto]:
            if isinstance(target, Send):
                yield (NULL_TASK_ID, TASKS, target)
            elif isinstance(target, str):
                yield (NULL_TASK_ID, f"branch:to:{target}", START)
            else:
                raise TypeError(f"In Command.goto, expected Send/str, got {type(target).__name__}")
    if cmd.resume is not None:
        yield (NULL_TASK_ID, RESUME, cmd.resume)
    if cmd.update:
        for k, v in cmd._update_as_tuples():
            yield (NULL_TASK_ID, k, v)


class Loop(Recorder, TaskServices):
    """The state of one run between steps. Not reentrant; one per ``invoke``/``stream``."""

    def __init__(
        self,
        graph: CompiledStateGraph,
        input: Any,
        config: dict[str, Any],
        *,
        saver: Any,
        modes: frozenset[str],
        out: list[Chunk] | None,
        output_keys: Sequence[str] | str,
        interrupt_before: Sequence[str] | str,
        interrupt_after: Sequence[str] | str,
        durability: str = "async",
        parent: Task | None = None,
        stream_subgraphs: bool = False,
        context: Any = None,
        is_async: bool = False,
    ) -> None:
        self.graph = graph
        self.input = input
        self.config = config
        self.saver = saver
        self.modes = modes
        self.out = out
        self.output_keys = output_keys
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.durability = durability
        self.parent = parent
        self.stream_subgraphs = stream_subgraphs
        self.context = context
        self.store = graph.store
        # node caching, None when the graph has none: the only thing a run without it checks
        self.cache = graph.node_cache
        if self.cache is not None:
            self.cache_keys: dict[str, CacheKey] = {}
            self.cache_sets: list[dict[Any, Any]] = []
        self.nested = parent is not None
        self.ns: str = config[CONF].get(CHECKPOINT_NS, "") if self.nested else ""
        self.ns_tuple = tuple(self.ns.split(NS_SEP)) if self.ns else ()
        self.get_next_version: Callable[[Any, None], Any] = (
            saver.get_next_version if saver is not None else increment
        )
        self.put_writes_path = saver is not None and accepts_task_path(saver)
        self.want_updates = out is not None and "updates" in modes
        self.want_values = out is not None and "values" in modes
        self.want_tasks = out is not None and not modes.isdisjoint(("tasks", "debug"))
        # LangGraph streams checkpoints only where it has a checkpointer to store them
        self.want_checkpoints = (
            out is not None and saver is not None and not modes.isdisjoint(("checkpoints", "debug"))
        )
        self.stream_keys = graph.stream_channels
        self.output_seen = False
        self.interrupts: list[Interrupt] = []
        self.output: Any = None
        self.status = "input"
        self.tasks: dict[str, Task] = {}
        self.resume_map: Mapping[str, Any] | None = None
        self.resuming: bool | None = None
        self.null_resume_parent: NullResume | None = parent.null_resume if parent else None
        self.step = 0
        self.stop = 0
        self.io: list[tuple[str, tuple[Any, ...]]] | None = [] if is_async else None
        # "async" durability, sync driver: the saver's background writer makes the calls
        self.writer = (
            writer_for(saver)
            if saver is not None and durability == "async" and not is_async
            else None
        )
        self.owner = Owner()
        # the same with the async driver: a task of the event loop awaits the saver's calls
        self.behind = (
            AsyncWriteBehind(saver)
            if saver is not None and durability == "async" and is_async
            else None
        )
        # "sync" on a saver that takes batches: a lone task's writes wait for the step's
        # checkpoint and are stored with it, in one transaction (see ``hold_writes``)
        self.batches = (
            saver is not None
            and self.writer is None
            and not is_async
            and durability != "exit"
            and callable(getattr(saver, "save_batch", None))
        )
        self.holding = False
        self.held: list[tuple[str, tuple[Any, ...]]] = []
        self.addressed = not self.nested and bool(config[CONF].get(CHECKPOINT_ID))
        self.replaying = False
        self.messages: Any = None
        self.checkpoint_config: dict[str, Any] = {}
        self._writes_cfg: tuple[str, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ start

    def load_config(self) -> dict[str, Any]:
        """The config the thread's latest checkpoint is read with."""
        conf = self.config[CONF]
        base = {**self.config, CONF: {CHECKPOINT_NS: self.ns, **conf}}
        if self.nested:
            base[CONF][CHECKPOINT_NS] = self.ns
            base[CONF][CHECKPOINT_ID] = None
        self.checkpoint_config = base
        return base

    def start(self, saved: Any) -> None:
        """Take the loaded checkpoint (``None`` for a new thread) and apply the input."""
        base = self.checkpoint_config
        if saved is None:
            checkpoint = empty_checkpoint()
            self.checkpoint_metadata: dict[str, Any] = {"step": -2}
            self.prev_checkpoint_config = None
            self.pending_writes: list[tuple[str, str, Any]] = []
        else:
            checkpoint = saved.checkpoint
            self.checkpoint_config = {
                **base,
                **saved.config,
                CONF: {CHECKPOINT_NS: "", **base[CONF], **saved.config.get(CONF, {})},
            }
            self.checkpoint_metadata = dict(saved.metadata)
            self.prev_checkpoint_config = saved.parent_config
            self.pending_writes = [(str(t), c, v) for t, c, v in saved.pending_writes or ()]
        self.checkpoint = checkpoint
        self.checkpoint_id_saved = checkpoint["id"]
        self.channels = channels_from_checkpoint(self.graph.channels, checkpoint)
        self.step = self.checkpoint_metadata["step"] + 1
        self.stop = self.step + self.config["recursion_limit"] + 1
        self.prev_versions = dict(checkpoint["channel_versions"])
        updated = checkpoint.get("updated_channels")
        self.updated_channels = set(updated) if updated else None
        self.updated_channels = self._first(self.updated_channels)

    def _save(self, method: str, *args: Any) -> None:
        """Call the saver now ("sync", "exit"), hand the call to the saver's background
        writer ("async", see ``writeback.py``), or (async driver) queue it for its async form,
        which the driver awaits before the next step."""
        if self.io is not None:
            self.io.append((method, args))
        elif self.writer is not None:
            self.writer.submit(self.owner, method, args)
        elif self.holding or self.held:
            self.held.append((method, args))
            if not (self.holding and method == "put_writes"):
                self.release_held()
        else:
            getattr(self.saver, method)(*args)

    def hold_writes(self) -> None:
        """The writes of the task about to be recorded, the step's only one, are stored with
        the step's checkpoint, which follows at once: a separate commit for them would
        protect nothing (no other task of the step runs meanwhile) and cost one."""
        self.holding = self.batches

    def release_held(self) -> None:
        """Store the held calls (and the one that released them) together."""
        held, self.held, self.holding = self.held, [], False
        if len(held) > 1:
            self.saver.save_batch(held)
        elif held:
            method, args = held[0]
            getattr(self.saver, method)(*args)

    def settle(self) -> None:
        """Wait until the calls handed to the background writer are stored; raise the first
        error one of them met."""
        if self.writer is not None:
            self.writer.flush(self.owner)

    async def asettle(self) -> None:
        """``settle`` for the async driver."""
        if self.behind is not None:
            await self.behind.settle()

    def take_io(self) -> list[tuple[str, tuple[Any, ...]]]:
        io = self.io or []
        self.io = []
        return io

    def _first(self, updated_channels: set[str] | None) -> set[str] | None:
        graph = self.graph
        is_cmd = isinstance(self.input, Command)
        if self.nested and self.parent is not None:
            flag = self.parent.resuming
            if flag is None:
                flag = self.parent.loop.resuming
        else:
            flag = None
        default = self.input is None or is_cmd
        is_resuming = bool(self.checkpoint["channel_versions"]) and (
            default if flag is None else flag
        )
        # a run started at a named checkpoint replays from there (time travel): its tasks
        # run again, and unless that checkpoint is an update it starts a new branch
        traveling = self.addressed and not (is_cmd and self.input.resume is not None)
        self.replaying = traveling
        if traveling:
            self.pending_writes = [w for w in self.pending_writes if w[1] != RESUME]
        forks = (
            is_resuming
            and traveling
            and self.checkpoint_metadata.get("source") not in ("update", "fork")
        )
        carried: list[tuple[str, str, Any]] = []
        if is_cmd:
            self._apply_command(self.input, carried if forks else None)
        null_writes = [w[1:] for w in (*self.pending_writes, *carried) if w[0] == NULL_TASK_ID]
        if null_writes:
            upd = apply_writes(
                self.checkpoint,
                self.channels,
                [WritesOf(INPUT, null_writes)],
                self.get_next_version,
                graph.trigger_to_nodes,
                graph.volatile,
                graph.finishing,
            )
            if updated_channels is not None:
                updated_channels.update(upd)
        if is_resuming:
            versions = self.checkpoint["channel_versions"]
            seen = dict(self.checkpoint["versions_seen"].get(INTERRUPT) or ())
            for k in self.channels:
                if k in versions:
                    seen[k] = versions[k]
            self.checkpoint["versions_seen"][INTERRUPT] = seen
            if forks:
                self.pending_writes = [w for w in self.pending_writes if w[1] != INTERRUPT]
                self.put_checkpoint({"source": "fork"})
            self.values_changed()
        elif self.input is not None:
            discard = prepare_tasks(
                self.checkpoint,
                self.pending_writes,
                graph.nodes,
                self.channels,
                step=self.step,
                stop=self.stop,
                parent_ns=self.ns,
                loop=self,
                trigger_to_nodes=graph.trigger_to_nodes,
                updated_channels=updated_channels,
                read_inputs=False,
            )
            updated_channels = apply_writes(
                self.checkpoint,
                self.channels,
                [*discard.values(), WritesOf(INPUT, [(START, self.input)])],
                self.get_next_version,
                graph.trigger_to_nodes,
                graph.volatile,
                graph.finishing,
            )
            self.updated_channels = updated_channels
            self.put_checkpoint({"source": "input"})
        elif flag is None:
            raise EmptyInputError(f"Received no input for {START}")
        self.status = "pending"
        self.resuming = is_resuming
        return updated_channels

    def _apply_command(
        self, cmd: Command, carried: list[tuple[str, str, Any]] | None = None
    ) -> None:
        """Record a ``Command`` input's writes; ``carried`` takes them instead when the run
        starts a new branch, which stores them in its first checkpoint."""
        resume_is_map = False
        if cmd.resume is not None:
            if self.saver is None:
                raise RuntimeError("Cannot use Command(resume=...) without checkpointer")
            if isinstance(cmd.resume, dict) and all(is_interrupt_id(k) for k in cmd.resume):
                resume_is_map = True
                self.resume_map = cmd.resume
            elif len(pending_interrupts(self.pending_writes)) > 1:
                raise RuntimeError(
                    "When there are multiple pending interrupts, you must specify the "
                    "interrupt id when resuming. Docs: https://docs.langchain.com/oss/python/"
                    "langgraph/interrupts#handling-multiple-interrupts."
                )
        writes: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for tid, chan, value in map_command(cmd):
            if not (chan == RESUME and resume_is_map):
                writes[tid].append((chan, value))
        if not writes and not resume_is_map:
            raise EmptyInputError("Received empty Command input")
        for tid, ws in writes.items():
            if carried is not None:
                carried.extend((tid, c, v) for c, v in ws)
            else:
                self.put_writes(tid, ws)

    # ------------------------------------------------------------------ steps

    def tick(self) -> bool:
        """Prepare the next step; ``False`` when the run is over."""
        if self.step > self.stop:
            self.status = "out_of_steps"
            if self.want_checkpoints:  # the checkpoint the last step stored, as a tick shows it
                self.checkpoint_started(self.next_tasks().values())
            return False
        self.tasks = self.next_tasks()
        if self.want_checkpoints:
            self.checkpoint_started(self.tasks.values())
        if not self.tasks:
            self.status = "done"
            return False
        if self.pending_writes and not self.replaying:
            self._reapply_finished()
        if self.interrupt_before and should_interrupt(
            self.checkpoint, self.interrupt_before, self.tasks.values()
        ):
            self.status = "interrupt_before"
            raise GraphInterrupt()
        if self.want_tasks:
            self.tasks_started(self.tasks.values())
        for task in self.tasks.values():
            if task.writes:
                self.output_writes(task, task.writes, cached=True)
        return True

    def match_cached(self) -> None:
        """Before the step's tasks run (with a cache): those whose writes are cached take
        them, shown as cached, and do not run."""
        assert self.cache is not None
        self.cache_keys = keys = self.cache.keys(self.tasks.values())
        todo = {tid: t for tid, t in self.tasks.items() if not t.writes}
        for task, writes in self.cache.lookup(todo, keys):
            task.writes.extend(writes)
            self.put_writes(task.id, task.writes, cached=True)

    async def amatch_cached(self) -> None:
        """``match_cached`` with the cache's async methods."""
        assert self.cache is not None
        self.cache_keys = keys = self.cache.keys(self.tasks.values())
        todo = {tid: t for tid, t in self.tasks.items() if not t.writes}
        for task, writes in await self.cache.alookup(todo, keys):
            task.writes.extend(writes)
            self.put_writes(task.id, task.writes, cached=True)

    def store_cached(self, key: CacheKey, writes: list[tuple[str, Any]]) -> None:
        """Cache the writes of a task that finished: now, or (async driver) once the
        driver awaits ``astore_cached``."""
        assert self.cache is not None
        entry = self.cache.entry(key, writes)
        if entry is None:
            return
        if self.io is not None:
            self.cache_sets.append(entry)
        else:
            self.cache.cache.set(entry)

    async def astore_cached(self) -> None:
        assert self.cache is not None
        entries, self.cache_sets = self.cache_sets, []
        for entry in entries:
            await self.cache.cache.aset(entry)

    def next_tasks(self) -> dict[str, Task]:
        """The tasks of the step the current checkpoint starts."""
        graph = self.graph
        return prepare_tasks(
            self.checkpoint,
            self.pending_writes,
            graph.nodes,
            self.channels,
            step=self.step,
            stop=self.stop,
            parent_ns=self.ns,
            loop=self,
            trigger_to_nodes=graph.trigger_to_nodes,
            updated_channels=self.updated_channels,
            resume_map=self.resume_map,
            parent_null_resume=self.null_resume_parent,
        )

    def _reapply_finished(self) -> None:
        """Tasks that finished before an interrupt keep their writes instead of rerunning."""
        tasks = self.tasks
        outputs: dict[str, list[tuple[str, Any]]] = {}
        for tid, chan, value in self.pending_writes:
            if tid in tasks:
                bucket = outputs.setdefault(tid, [])
                if chan not in CONTROL_WRITES:
                    bucket.append((chan, value))
        for tid, writes in outputs.items():
            if writes:
                tasks[tid].writes.extend(writes)

    def pending(self) -> list[Task]:
        return [t for t in self.tasks.values() if not t.writes]

    def after_tick(self) -> None:
        """Apply the step's writes, store a checkpoint, stop after nodes if asked."""
        graph = self.graph
        tasks = list(self.tasks.values())
        self.updated_channels = updated = apply_writes(
            self.checkpoint,
            self.channels,
            tasks,
            self.get_next_version,
            graph.trigger_to_nodes,
            graph.volatile,
            graph.finishing,
        )
        keys = self.output_keys
        if (keys in updated) if isinstance(keys, str) else not updated.isdisjoint(keys):
            self.values_changed()
        self.pending_writes.clear()
        self.put_checkpoint({"source": "loop"})
        if self.interrupt_after and should_interrupt(self.checkpoint, self.interrupt_after, tasks):
            self.status = "interrupt_after"
            if self.want_checkpoints:  # the next tick, which would show it, never runs
                self.checkpoint_started(self.next_tasks().values())
            raise GraphInterrupt()
        self.resuming = None
        self.resume_map = None
        self.replaying = False

    def exit(self, exc: BaseException | None) -> bool:
        """Finish the run; ``True`` when ``exc`` (an interrupt) is handled here."""
        if self.held:  # the step failed between its task and its checkpoint
            self.release_held()
        if (
            self.durability == "exit"
            and self.saver is not None
            and (not self.nested or exc is not None)
        ):
            self.put_checkpoint(self.checkpoint_metadata)
            self._put_pending_writes()
        if isinstance(exc, GraphInterrupt) and not self.nested:
            if self.tasks and self.pending_writes and any(t.writes for t in self.tasks.values()):
                graph = self.graph
                updated = apply_writes(
                    self.checkpoint,
                    self.channels,
                    list(self.tasks.values()),
                    self.get_next_version,
                    graph.trigger_to_nodes,
                    graph.volatile,
                    graph.finishing,
                )
                keys = self.output_keys
                if (keys in updated) if isinstance(keys, str) else not updated.isdisjoint(keys):
                    self.values_changed()
            if (not exc.args or not exc.args[0]) and self.want_updates:
                self._put("updates", {INTERRUPT: exc.args[0] if exc.args else ()})
            self.output = read_channels(self.channels, self.output_keys)
            return True
        if exc is None:
            self.output = read_channels(self.channels, self.output_keys)
        return False
