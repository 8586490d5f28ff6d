"""How a run starts: what its input means given the checkpoint it starts from (a new input,
a resume, time travel), and a ``Command`` input as the writes it makes. Pure, no loop."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cadenza.langgraph._engine.ids import is_interrupt_id
from cadenza.langgraph._engine.pending import pending_interrupts
from cadenza.langgraph._keys import INTERRUPT, NULL_TASK_ID, RESUME, START, TASKS
from cadenza.langgraph.errors import EmptyInputError, InvalidUpdateError
from cadenza.langgraph.types import Command, Send

__all__ = ("Beginning", "beginning", "command_writes", "map_command", "mark_resumed")


@dataclass(slots=True, frozen=True)
class Beginning:
    """What a run's input means. ``resuming``: it continues the checkpoint (no new input,
    or a ``Command``); ``traveling``: it starts at a checkpoint named in its config, whose
    tasks run again; ``forks``: that replay starts a new branch (a fork checkpoint first);
    ``parent``: a subgraph's parent task says whether it resumes (``None``: no parent)."""

    command: bool
    resuming: bool
    traveling: bool
    forks: bool
    parent: bool | None


def beginning(
    input: Any,
    checkpoint: Mapping[str, Any],
    metadata: Mapping[str, Any],
    *,
    addressed: bool,
    parent: bool | None,
) -> Beginning:
    """What ``input`` means at ``checkpoint`` (``addressed``: the config names it)."""
    command = isinstance(input, Command)
    default = input is None or command
    resuming = bool(checkpoint["channel_versions"]) and (default if parent is None else parent)
    traveling = addressed and not (command and input.resume is not None)
    forks = resuming and traveling and metadata.get("source") not in ("update", "fork")
    return Beginning(command, resuming, traveling, forks, parent)


def mark_resumed(checkpoint: dict[str, Any], channels: Mapping[str, Any]) -> None:
    """Record that the run resuming from ``checkpoint`` has seen every channel's version, as
    LangGraph does (under the interrupt's name)."""
    versions = checkpoint["channel_versions"]
    seen = dict(checkpoint["versions_seen"].get(INTERRUPT) or ())
    for k in channels:
        if k in versions:
            seen[k] = versions[k]
    checkpoint["versions_seen"][INTERRUPT] = seen


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


def command_writes(
    cmd: Command, pending_writes: Sequence[tuple[str, str, Any]], *, checkpointed: bool
) -> tuple[dict[str, list[tuple[str, Any]]], Mapping[str, Any] | None]:
    """The writes of a ``Command`` input by task id, and the resume values by interrupt id
    when it resumes several interrupts at once (``pending_writes``: the checkpoint's)."""
    resume_map: Mapping[str, Any] | None = None
    if cmd.resume is not None:
        if not checkpointed:
            raise RuntimeError("Cannot use Command(resume=...) without checkpointer")
        if isinstance(cmd.resume, dict) and all(is_interrupt_id(k) for k in cmd.resume):
            resume_map = cmd.resume
        elif len(pending_interrupts(pending_writes)) > 1:
            raise RuntimeError(
                "When there are multiple pending interrupts, you must specify the "
                "interrupt id when resuming. Docs: https://docs.langchain.com/oss/python/"
                "langgraph/interrupts#handling-multiple-interrupts."
            )
    writes: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for tid, chan, value in map_command(cmd):
        if not (chan == RESUME and resume_map is not None):
            writes[tid].append((chan, value))
    if not writes and resume_map is None:
        raise EmptyInputError("Received empty Command input")
    return writes, resume_map
