"""One run of a graph: load the thread's checkpoint, apply the input (or a ``Command``),
then step by step prepare the tasks, apply their writes once a driver (``drive.py``) has
run them, and store a checkpoint. The loop owns the channels and the step's tasks; it works
with collaborators that own the rest: where the run is and what it records for the saver
(:class:`~.loop_position.Position`), how those calls reach the saver
(:class:`~.loop_saver.SaverCalls`), what the caller is streamed (:class:`~.loop_stream.Stream`),
and what running nodes reach (:class:`~.loop_services.TaskServices`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.algo import (
    WritesOf,
    apply_writes,
    increment,
    prepare_tasks,
    should_interrupt,
)
from cadenza.langgraph._engine.cache import RunCache
from cadenza.langgraph._engine.checkpoint import channels_from_checkpoint
from cadenza.langgraph._engine.emit import read_channels
from cadenza.langgraph._engine.loop_position import Position
from cadenza.langgraph._engine.loop_saver import SaverCalls
from cadenza.langgraph._engine.loop_services import TaskServices
from cadenza.langgraph._engine.loop_stream import Stream
from cadenza.langgraph._engine.pending import reapply_finished
from cadenza.langgraph._engine.start import beginning, command_writes, mark_resumed
from cadenza.langgraph._keys import (
    CHECKPOINT_ID,
    CHECKPOINT_NS,
    CONF,
    CONTROL_WRITES,
    ERROR,
    INPUT,
    INTERRUPT,
    NO_WRITES,
    NS_SEP,
    NULL_TASK_ID,
    RESUME,
    START,
)
from cadenza.langgraph.errors import (
    EmptyInputError,
    GraphBubbleUp,
    GraphInterrupt,
)
from cadenza.langgraph.types import Command

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import NullResume, Task
    from cadenza.langgraph.graph.compiled import CompiledStateGraph

__all__ = ("Loop",)

Chunk = tuple[tuple[str, ...], str, Any]


class Loop:
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
        messages: Any = None,
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
        self.messages = messages  # the ``messages`` stream's handler, ``None``: not streamed
        # node caching, None when the graph has none: the only thing a run without it checks
        node_cache = graph.node_cache
        self.cache = RunCache(node_cache, deferred=is_async) if node_cache is not None else None
        self.nested = parent is not None
        self.ns: str = config[CONF].get(CHECKPOINT_NS, "") if self.nested else ""
        self.get_next_version: Callable[[Any, None], Any] = (
            saver.get_next_version if saver is not None else increment
        )
        self.calls = (
            SaverCalls(saver, durability=durability, is_async=is_async)
            if saver is not None
            else None
        )
        self.position = Position(
            config, self.ns, self.calls, nested=self.nested, durability=durability
        )
        self.stream = Stream(
            out,
            modes,
            tuple(self.ns.split(NS_SEP)) if self.ns else (),
            output_keys=output_keys,
            stream_keys=graph.stream_channels,
            checkpointed=saver is not None,
        )
        self.services = TaskServices(
            config,
            self.ns,
            self.position,
            self.stream,
            checkpointed=saver is not None,
            context=context,
            store=self.store,
            messages=messages,
        )
        self.output: Any = None
        self.status = "input"
        self.tasks: dict[str, Task] = {}
        self.channels: dict[str, Any] = {}
        self.updated_channels: set[str] | None = None
        self.stop = 0
        self.resume_map: Mapping[str, Any] | None = None
        self.resuming: bool | None = None
        self.null_resume_parent: NullResume | None = parent.null_resume if parent else None
        self.addressed = not self.nested and bool(config[CONF].get(CHECKPOINT_ID))
        self.replaying = False

    # ------------------------------------------------------------------ start

    def start(self, saved: Any) -> None:
        """Take the loaded checkpoint (``None`` for a new thread) and apply the input."""
        position = self.position
        position.start(saved)
        checkpoint = position.checkpoint
        self.channels = channels_from_checkpoint(self.graph.channels, checkpoint)
        self.stop = position.step + self.config["recursion_limit"] + 1
        updated = checkpoint.get("updated_channels")
        self.updated_channels = set(updated) if updated else None
        self.updated_channels = self._first(self.updated_channels)

    def _first(self, updated_channels: set[str] | None) -> set[str] | None:
        """Apply the input; returns the channels it updated."""
        graph, position = self.graph, self.position
        parent = None
        if self.nested and self.parent is not None:
            parent = self.parent.resuming
            if parent is None:
                parent = self.parent.loop.resuming
        begin = beginning(
            self.input,
            position.checkpoint,
            position.metadata,
            addressed=self.addressed,
            parent=parent,
        )
        # a run started at a named checkpoint replays from there (time travel): its tasks
        # run again, and unless that checkpoint is an update it starts a new branch
        self.replaying = begin.traveling
        if begin.traveling:
            position.pending_writes = [w for w in position.pending_writes if w[1] != RESUME]
        carried: list[tuple[str, str, Any]] = []
        if begin.command:
            self._apply_command(self.input, carried if begin.forks else None)
        pending = position.pending_writes
        null_writes = [w[1:] for w in (*pending, *carried) if w[0] == NULL_TASK_ID]
        if null_writes:
            upd = apply_writes(
                position.checkpoint,
                self.channels,
                [WritesOf(INPUT, null_writes)],
                self.get_next_version,
                graph.trigger_to_nodes,
                graph.volatile,
                graph.finishing,
            )
            if updated_channels is not None:
                updated_channels.update(upd)
        if begin.resuming:
            mark_resumed(position.checkpoint, self.channels)
            if begin.forks:
                position.pending_writes = [w for w in pending if w[1] != INTERRUPT]
                self.put_checkpoint({"source": "fork"})
            self.stream.values_changed(self.channels)
        elif self.input is not None:
            discard = prepare_tasks(
                position.checkpoint,
                position.pending_writes,
                graph.nodes,
                self.channels,
                step=position.step,
                stop=self.stop,
                parent_ns=self.ns,
                loop=self,
                trigger_to_nodes=graph.trigger_to_nodes,
                updated_channels=updated_channels,
                read_inputs=False,
            )
            updated_channels = apply_writes(
                position.checkpoint,
                self.channels,
                [*discard.values(), WritesOf(INPUT, [(START, self.input)])],
                self.get_next_version,
                graph.trigger_to_nodes,
                graph.volatile,
                graph.finishing,
            )
            self.updated_channels = updated_channels
            self.put_checkpoint({"source": "input"})
        elif parent is None:
            raise EmptyInputError(f"Received no input for {START}")
        self.status = "pending"
        self.resuming = begin.resuming
        return updated_channels

    def _apply_command(
        self, cmd: Command, carried: list[tuple[str, str, Any]] | None = None
    ) -> None:
        """Record a ``Command`` input's writes; ``carried`` takes them instead when the run
        starts a new branch, which stores them in its first checkpoint."""
        writes, resume_map = command_writes(
            cmd, self.position.pending_writes, checkpointed=self.saver is not None
        )
        if resume_map is not None:
            self.resume_map = resume_map
        for tid, ws in writes.items():
            if carried is not None:
                carried.extend((tid, c, v) for c, v in ws)
            else:
                self.put_writes(tid, ws)

    # ------------------------------------------------------------------ steps

    def tick(self) -> bool:
        """Prepare the next step; ``False`` when the run is over."""
        stream, step = self.stream, self.position.step
        if step > self.stop:
            self.status = "out_of_steps"
            if stream.want_checkpoints:  # the checkpoint the last step stored, as a tick shows it
                self._checkpoint_started(self.next_tasks().values())
            return False
        self.tasks = self.next_tasks()
        if stream.want_checkpoints:
            self._checkpoint_started(self.tasks.values())
        if not self.tasks:
            self.status = "done"
            return False
        if self.position.pending_writes and not self.replaying:
            reapply_finished(self.tasks, self.position.pending_writes)
        if self.interrupt_before and should_interrupt(
            self.position.checkpoint, self.interrupt_before, self.tasks.values()
        ):
            self.status = "interrupt_before"
            raise GraphInterrupt()
        if stream.want_tasks:
            stream.tasks_started(self.tasks.values(), step)
        for task in self.tasks.values():
            if task.writes:
                stream.task_writes(task, task.writes, True, self.channels, step)
        return True

    def _checkpoint_started(self, tasks: Iterable[Task]) -> None:
        position = self.position
        self.stream.checkpoint_started(
            position.named_config(),
            position.parent_config,
            position.metadata,
            self.channels,
            tasks,
            position.pending_writes,
            position.step,
        )

    def match_cached(self) -> None:
        """Before the step's tasks run (with a cache): those whose writes are cached take
        them, shown as cached, and do not run."""
        assert self.cache is not None
        for task, writes in self.cache.match(self.tasks):
            task.writes.extend(writes)
            self.put_writes(task.id, task.writes, cached=True)

    async def amatch_cached(self) -> None:
        """``match_cached`` with the cache's async methods."""
        assert self.cache is not None
        for task, writes in await self.cache.amatch(self.tasks):
            task.writes.extend(writes)
            self.put_writes(task.id, task.writes, cached=True)

    def next_tasks(self) -> dict[str, Task]:
        """The tasks of the step the current checkpoint starts."""
        graph = self.graph
        position = self.position
        return prepare_tasks(
            position.checkpoint,
            position.pending_writes,
            graph.nodes,
            self.channels,
            step=position.step,
            stop=self.stop,
            parent_ns=self.ns,
            loop=self,
            trigger_to_nodes=graph.trigger_to_nodes,
            updated_channels=self.updated_channels,
            resume_map=self.resume_map,
            parent_null_resume=self.null_resume_parent,
        )

    def pending(self) -> list[Task]:
        return [t for t in self.tasks.values() if not t.writes]

    def after_tick(self) -> None:
        """Apply the step's writes, store a checkpoint, stop after nodes if asked."""
        if self._apply_step():
            self.stream.values_changed(self.channels)
        position = self.position
        position.pending_writes.clear()
        position.put_checkpoint({"source": "loop"}, self.channels, self.updated_channels)
        tasks = self.tasks.values()
        if self.interrupt_after and should_interrupt(
            self.position.checkpoint, self.interrupt_after, tasks
        ):
            self.status = "interrupt_after"
            if self.stream.want_checkpoints:  # the next tick, which would show it, never runs
                self._checkpoint_started(self.next_tasks().values())
            raise GraphInterrupt()
        self.resuming = None
        self.resume_map = None
        self.replaying = False

    def _apply_step(self) -> bool:
        """Apply the writes of the step's tasks; whether the output channels changed."""
        graph = self.graph
        self.updated_channels = updated = apply_writes(
            self.position.checkpoint,
            self.channels,
            list(self.tasks.values()),
            self.get_next_version,
            graph.trigger_to_nodes,
            graph.volatile,
            graph.finishing,
        )
        keys = self.output_keys
        return (keys in updated) if isinstance(keys, str) else not updated.isdisjoint(keys)

    def exit(self, exc: BaseException | None) -> bool:
        """Finish the run; ``True`` when ``exc`` (an interrupt) is handled here."""
        calls = self.calls
        if calls is not None and calls.held:  # the step failed between its task and checkpoint
            calls.release_held()
        if self.durability == "exit" and calls is not None and (not self.nested or exc is not None):
            self.position.put_checkpoint(None, self.channels, self.updated_channels)
            self.position.put_pending_writes(self.tasks)
        if isinstance(exc, GraphInterrupt) and not self.nested:
            tasks = self.tasks
            pending = self.position.pending_writes
            if tasks and pending and any(t.writes for t in tasks.values()) and self._apply_step():
                self.stream.values_changed(self.channels)
            if not exc.args or not exc.args[0]:
                self.stream.interrupted(exc.args[0] if exc.args else ())
            self.output = read_channels(self.channels, self.output_keys)
            return True
        if exc is None:
            self.output = read_channels(self.channels, self.output_keys)
        return False

    # ------------------------------------------------------------------ recording

    def put_checkpoint(self, metadata: dict[str, Any]) -> None:
        """Store the checkpoint that ends a step (see :meth:`Position.put_checkpoint`)."""
        self.position.put_checkpoint(metadata, self.channels, self.updated_channels)

    def put_writes(
        self, task_id: str, writes: Sequence[tuple[str, Any]], cached: bool = False
    ) -> None:
        """Record a task's writes for this step (and with the saver, durably), and stream
        them; ``cached`` writes were found in the node cache instead of made by running the
        node."""
        if not writes:
            return
        task = self.tasks.get(task_id)
        writes = self.position.put_writes(task_id, writes, task)
        stream = self.stream
        # with nothing streamed, only an interrupt is for the caller (``invoke`` returns it)
        if task is not None and (stream.out is not None or writes[0][0] == INTERRUPT):
            stream.task_writes(task, writes, cached, self.channels, self.position.step)

    def commit(self, task: Task, exc: BaseException | None) -> None:
        """Record how a task ended: its writes, its interrupt, or its error."""
        if exc is None:
            if all(c in CONTROL_WRITES for c, _ in task.writes):
                task.writes.append((NO_WRITES, None))
            self.put_writes(task.id, task.writes)
            if self.cache is not None:
                self.cache.store(task.id, task.writes)
        elif isinstance(exc, GraphInterrupt):
            if exc.args and exc.args[0]:
                writes: list[tuple[str, Any]] = [(INTERRUPT, exc.args[0])]
                writes.extend(w for w in task.writes if w[0] == RESUME)
                self.put_writes(task.id, writes)
        elif not isinstance(exc, GraphBubbleUp):
            task.writes.append((ERROR, exc))
            self.put_writes(task.id, task.writes)
