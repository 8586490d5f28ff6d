"""A compiled node: which channels trigger it, what it reads, how to call it, and how its
return value becomes writes (state updates, ``Command``/``Send`` routing, its static edges
and its conditional edges, in that order)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.call import Caller
from cadenza.langgraph._keys import END, MISSING, ROOT, START, TASKS
from cadenza.langgraph.errors import (
    ErrorCode,
    InvalidUpdateError,
    ParentCommand,
    create_error_message,
)
from cadenza.langgraph.graph._schema import object_fields, object_updates
from cadenza.langgraph.types import Command, RetryPolicy, Send, TimeoutPolicy

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("Branch", "Node", "branch_channel", "read_state")


def branch_channel(node: str) -> str:
    return f"branch:to:{node}"


class Node:
    """Everything the executor needs about one node; built once by ``compile``."""

    __slots__ = (
        "branches",
        "caller",
        "defer",
        "ends",
        "hidden",
        "input_key",
        "managed",
        "mapper",
        "metadata",
        "name",
        "reads",
        "retry",
        "root_updates",
        "static_writes",
        "subgraph",
        "tags",
        "timeout",
        "triggers",
        "update_keys",
        "update_list",
    )

    def __init__(
        self,
        name: str,
        *,
        triggers: list[str],
        reads: str | tuple[str, ...],
        mapper: Callable[[Any], Any] | None,
        managed: Mapping[str, Any],
        caller: Caller | None,
        update_keys: Sequence[str],
        retry: Sequence[RetryPolicy] = (),
        hidden: bool = False,
        subgraph: Any = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        timeout: TimeoutPolicy | None = None,
        defer: bool = False,
        ends: Sequence[str] | Mapping[str, str] = (),
    ) -> None:
        self.name = name
        self.triggers = triggers
        self.reads = reads
        self.mapper = mapper
        self.managed = dict(managed)
        self.caller = caller
        self.update_list = list(update_keys)
        self.update_keys = frozenset(update_keys)
        self.root_updates = self.update_list == [ROOT]
        self.retry = tuple(retry)
        self.hidden = hidden
        self.subgraph = subgraph
        self.metadata = dict(metadata or {})
        self.tags = list(tags)
        self.timeout = timeout
        self.defer = defer
        self.ends = ends
        self.static_writes: list[tuple[str, Any]] = []
        self.branches: list[Branch] = []
        self.input_key = (reads, id(mapper))

    def produce(self, task: Task, output: Any) -> None:
        """Append the writes ``output`` makes to ``task.writes``."""
        self._write(task, output)
        for branch in self.branches:
            branch.route(task, output)

    async def aproduce(self, task: Task, output: Any) -> None:
        """``produce`` for the async API, where conditional edges may be coroutines."""
        self._write(task, output)
        for branch in self.branches:
            await branch.aroute(task, output)

    def _write(self, task: Task, output: Any) -> None:
        """The task's writes from the node's output: its state keys, control writes (a
        ``Command``), and the node's static writes."""
        writes = task.writes
        if type(output) is dict and not self.root_updates:
            keys = self.update_keys
            writes.extend([(k, v) for k, v in output.items() if k in keys])
        else:
            writes.extend(self.updates(output))
            writes.extend(control_writes(output))
        if self.static_writes:
            writes.extend(self.static_writes)

    def updates(self, output: Any) -> list[tuple[str, Any]]:
        """The state writes a return value makes (LangGraph's ``_get_updates``)."""
        if self.root_updates:
            return _root_updates(output)
        if output is None:
            return []
        keys = self.update_keys
        if isinstance(output, dict):
            return [(k, v) for k, v in output.items() if k in keys]
        if isinstance(output, Command):
            if output.graph == Command.PARENT:
                return []
            return [(k, v) for k, v in output._update_as_tuples() if k in keys]
        if (
            isinstance(output, (list, tuple))
            and output
            and any(isinstance(i, Command) for i in output)
        ):
            out: list[tuple[str, Any]] = []
            for item in output:
                if isinstance(item, Command):
                    if item.graph != Command.PARENT:
                        out.extend((k, v) for k, v in item._update_as_tuples() if k in keys)
                else:
                    out.extend(self.updates(item))
            return out
        if object_fields(type(output)):
            return object_updates(output, self.update_list)
        raise InvalidUpdateError(
            create_error_message(
                message=f"Expected dict, got {output}",
                error_code=ErrorCode.INVALID_GRAPH_NODE_RETURN_VALUE,
            )
        )


def _root_updates(output: Any) -> list[tuple[str, Any]]:
    if isinstance(output, Command):
        return [] if output.graph == Command.PARENT else list(output._update_as_tuples())
    if isinstance(output, (list, tuple)) and output and any(isinstance(i, Command) for i in output):
        out: list[tuple[str, Any]] = []
        for item in output:
            if isinstance(item, Command):
                if item.graph != Command.PARENT:
                    out.extend(item._update_as_tuples())
            else:
                out.append((ROOT, item))
        return out
    return [] if output is None else [(ROOT, output)]


def control_writes(output: Any) -> list[tuple[str, Any]]:
    """Routing a return value asks for: ``Send`` packets and ``Command.goto`` targets."""
    if isinstance(output, Send):
        return [(TASKS, output)]
    if isinstance(output, Command):
        commands = [output]
    elif isinstance(output, (list, tuple)):
        commands = [c for c in output if isinstance(c, Command)]
    else:
        return []
    out: list[tuple[str, Any]] = []
    for command in commands:
        if command.graph == Command.PARENT:
            raise ParentCommand(command)
        goto = command.goto
        for target in [goto] if isinstance(goto, (Send, str)) else goto:
            if isinstance(target, Send):
                out.append((TASKS, target))
            elif isinstance(target, str) and target != END:
                out.append((branch_channel(target), None))
    return out


def read_state(
    task: Task,
    select: tuple[str, ...] | str,
    managed: Mapping[str, Any],
) -> Any:
    """The state as ``task`` sees it with its own writes applied (for conditional edges)."""
    loop = task.loop
    channels = loop.channels
    own: dict[str, list[Any]] = {}
    for chan, value in task.writes:
        if chan in channels:
            own.setdefault(chan, []).append(value)
    volatile = loop.graph.volatile

    def read(key: str) -> Any:
        ch = channels[key]
        if key in own or key in volatile:
            ch = ch.copy()
            ch.update(own.get(key, ()))
        return ch.get() if ch.is_available() else MISSING

    if isinstance(select, str):
        value = read(select)
        return None if value is MISSING else value
    values: dict[str, Any] = {}
    for key in select:
        if key in managed:
            values[key] = managed[key].get(loop.position.step, loop.stop)
        elif key in channels:
            value = read(key)
            if value is not MISSING:
                values[key] = value
    return values


class Branch:
    """A conditional edge: a path function over the fresh state, and an optional map from
    its return values to node names."""

    __slots__ = ("caller", "ends", "input_schema", "managed", "mapper", "select")

    def __init__(
        self,
        caller: Caller,
        ends: dict[Any, str] | None,
        *,
        select: tuple[str, ...] | str,
        mapper: Callable[[Any], Any] | None,
        managed: Mapping[str, Any],
        input_schema: Any,
    ) -> None:
        self.caller = caller
        self.ends = ends
        self.select = select
        self.mapper = mapper
        self.managed = dict(managed)
        self.input_schema = input_schema

    def _value(self, task: Task, output: Any) -> Any:
        value = read_state(task, self.select, self.managed)
        if self.mapper is not None:
            value = self.mapper(value)
        if isinstance(value, dict) and isinstance(output, dict) and self.input_schema is None:
            value = {**output, **value}
        return value

    def route(self, task: Task, output: Any) -> None:
        result = self.caller.call(self._value(task, output), task)
        task.writes.extend(self.finish(result))

    async def aroute(self, task: Task, output: Any) -> None:
        result = await self.caller.acall(self._value(task, output), task)
        task.writes.extend(self.finish(result))

    def finish(self, result: Any) -> list[tuple[str, Any]]:
        if not isinstance(result, (list, tuple)):
            result = [result]
        if self.ends:
            destinations = [r if isinstance(r, Send) else self.ends[r] for r in result]
        else:
            destinations = list(result)
        if any(d is None or d == START for d in destinations):
            raise ValueError("Branch did not return a valid destination")
        if any(d.node == END for d in destinations if isinstance(d, Send)):
            raise InvalidUpdateError("Cannot send a packet to the END node")
        return [
            (TASKS, d) if isinstance(d, Send) else (branch_channel(d), None)
            for d in destinations
            if d != END
        ]
