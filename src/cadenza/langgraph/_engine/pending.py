"""Reading a step's pending writes: which tasks finished, their output, their interrupts.

A task finished iff it recorded an output write (``NO_WRITES`` when it produced none); a
task that paused recorded only control writes, and its last interrupt is still pending."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._keys import CONTROL_WRITES, ERROR, INTERRUPT, NULL_TASK_ID

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("TaskStatus", "pending_interrupts", "reapply_finished", "task_statuses")


@dataclass(frozen=True, slots=True)
class TaskStatus:
    output: tuple[tuple[str, Any], ...] = ()
    interrupts: tuple[Any, ...] = ()
    error: Any = None

    @property
    def finished(self) -> bool:
        return bool(self.output)

    @property
    def pending_interrupts(self) -> tuple[Any, ...]:
        return () if self.finished else self.interrupts


def task_statuses(pending_writes: Iterable[tuple[str, str, Any]]) -> dict[str, TaskStatus]:
    output: dict[str, list[tuple[str, Any]]] = {}
    interrupts: dict[str, list[Any]] = {}
    errors: dict[str, BaseException] = {}
    for tid, chan, value in pending_writes:
        if tid == NULL_TASK_ID:
            continue
        output.setdefault(tid, [])
        if chan == INTERRUPT:
            interrupts.setdefault(tid, []).extend(value if isinstance(value, Sequence) else [value])
        elif chan == ERROR:
            errors.setdefault(tid, value)
        elif chan not in CONTROL_WRITES:
            output[tid].append((chan, value))
    return {
        tid: TaskStatus(tuple(out), tuple(interrupts.get(tid, ())), errors.get(tid))
        for tid, out in output.items()
    }


def pending_interrupts(pending_writes: Iterable[tuple[str, str, Any]]) -> set[str]:
    """Ids of interrupts still waiting for an answer."""
    return {
        i.id for status in task_statuses(pending_writes).values() for i in status.pending_interrupts
    }


def reapply_finished(
    tasks: Mapping[str, Task], pending_writes: Iterable[tuple[str, str, Any]]
) -> None:
    """Tasks that finished before an interrupt keep their writes instead of running again."""
    outputs: dict[str, list[tuple[str, Any]]] = {}
    for tid, chan, value in pending_writes:
        if tid in tasks:
            bucket = outputs.setdefault(tid, [])
            if chan not in CONTROL_WRITES:
                bucket.append((chan, value))
    for tid, writes in outputs.items():
        if writes:
            tasks[tid].writes.extend(writes)
