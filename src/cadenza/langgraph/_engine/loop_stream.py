"""What a run streams to its caller: the chunks of each mode asked for (``updates``,
``values``, ``tasks``, ``checkpoints``, ``debug``), and what it has to say at the end (its
interrupts, and whether it has output). The loop tells it what happened; it decides what the
caller sees."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.debug import (
    checkpoint_payload,
    debug_event,
    task_payload,
    task_result,
)
from cadenza.langgraph._engine.emit import read_channels, task_updates
from cadenza.langgraph._keys import ERROR, INTERRUPT

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("Stream",)


class Stream:
    """The output of one run: ``out`` (``None``: nothing is streamed, as for ``invoke``)
    takes ``(namespace, mode, payload)`` chunks of the ``modes`` asked for."""

    __slots__ = (
        "interrupts", "modes", "ns", "out", "output_keys", "seen", "stream_keys",
        "want_checkpoints", "want_tasks", "want_updates", "want_values",
    )  # fmt: skip

    def __init__(
        self,
        out: list[tuple[tuple[str, ...], str, Any]] | None,
        modes: frozenset[str],
        ns: tuple[str, ...],
        *,
        output_keys: Sequence[str] | str,
        stream_keys: Sequence[str] | str,
        checkpointed: bool,
    ) -> None:
        self.out = out
        self.modes = modes
        self.ns = ns
        self.output_keys = output_keys
        self.stream_keys = stream_keys
        self.want_updates = out is not None and "updates" in modes
        self.want_values = out is not None and "values" in modes
        self.want_tasks = out is not None and not modes.isdisjoint(("tasks", "debug"))
        # LangGraph streams checkpoints only where it has a checkpointer to store them
        self.want_checkpoints = (
            out is not None and checkpointed and not modes.isdisjoint(("checkpoints", "debug"))
        )
        self.interrupts: list[Any] = []  # what the run's tasks interrupted with
        self.seen = False  # whether the run has output (values, or an interrupt)

    def put(self, mode: str, payload: Any) -> None:
        assert self.out is not None
        self.out.append((self.ns, mode, payload))

    def task_writes(
        self,
        task: Task,
        writes: Sequence[tuple[str, Any]],
        cached: bool,
        channels: dict[str, Any],
        step: int,
    ) -> None:
        """A task's writes: its interrupt, or its update (``cached``: found in the node
        cache), and its result for ``tasks``/``debug``."""
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
            self.seen = True
            if self.want_updates:
                self.put("updates", {INTERRUPT: found})
            if self.want_values:
                current = read_channels(channels, self.output_keys)
                if isinstance(current, dict):
                    current[INTERRUPT] = found
                    self.put("values", current)
                else:
                    self.put("values", {INTERRUPT: found})
        elif first != ERROR and self.want_updates:
            chunk = task_updates(self.output_keys, [(task, writes)], cached)
            if chunk is not None:
                self.put("updates", chunk)
        if self.want_tasks and not cached:
            self._debug("tasks", task_result(task, writes, self.stream_keys), step)

    def values_changed(self, channels: dict[str, Any]) -> None:
        self.seen = True
        if self.want_values:
            self.put("values", read_channels(channels, self.output_keys))

    def interrupted(self, value: Any) -> None:
        """The run stops at an interrupt it shows as an update (``interrupt_before``/
        ``_after``)."""
        if self.want_updates:
            self.put("updates", {INTERRUPT: value})

    def tasks_started(self, tasks: Iterable[Task], step: int) -> None:
        """Stream the step's tasks as they start (``tasks``/``debug``); hidden ones (the
        graph's own input task) are not shown."""
        for task in tasks:
            if not task.hidden:
                self._debug("tasks", task_payload(task), step)

    def checkpoint_started(
        self,
        config: dict[str, Any],
        parent_config: dict[str, Any] | None,
        metadata: dict[str, Any],
        channels: dict[str, Any],
        tasks: Iterable[Task],
        pending_writes: list[tuple[str, str, Any]],
        step: int,
    ) -> None:
        """Stream the checkpoint (``config`` names it) the step about to run starts from
        (``checkpoints``/``debug``), with ``tasks`` as its next tasks. Built from the loop's
        own state: with "async" durability the saver may not have stored it yet."""
        payload = checkpoint_payload(
            config,
            parent_config,
            metadata,
            channels,
            self.stream_keys,
            self.output_keys,
            tasks,
            pending_writes,
        )
        self._debug("checkpoints", payload, step)

    def _debug(self, mode: str, payload: dict[str, Any], step: int) -> None:
        """Stream a ``tasks`` or ``checkpoints`` event, and its ``debug`` form when that
        mode is asked for (a checkpoint belongs to the step that stored it)."""
        if mode in self.modes:
            self.put(mode, payload)
        if "debug" in self.modes:
            self.put(
                "debug", debug_event(mode, step - 1 if mode == "checkpoints" else step, payload)
            )
