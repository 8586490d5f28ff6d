"""A task: one node to run in one step, with its input, its writes and what it needs to
answer ``interrupt``, ``get_config`` and the stream writer while it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.ids import interrupt_id
from cadenza.langgraph._keys import RESUME
from cadenza.langgraph.errors import GraphInterrupt, mark_invalid_resume
from cadenza.langgraph.types import Interrupt

if TYPE_CHECKING:
    from cadenza.langgraph._engine.loop import Loop
    from cadenza.langgraph._engine.node import Node

__all__ = ("NullResume", "Task")


class NullResume:
    """The resume value given without an interrupt id; the first interrupt to ask takes it.

    Shared by every task of a step (and handed down to subgraphs), so only one task
    consumes it."""

    __slots__ = ("parent", "pending_writes", "write")

    def __init__(
        self,
        write: tuple[str, str, Any] | None,
        pending_writes: list[tuple[str, str, Any]],
        parent: NullResume | None,
    ) -> None:
        self.write = write
        self.pending_writes = pending_writes
        self.parent = parent

    def take(self) -> Any:
        if self.write is None:
            return self.parent.take() if self.parent is not None else None
        try:
            self.pending_writes.remove(self.write)
        except ValueError:
            return None
        return self.write[2]


class Task:
    """Not thread-safe on purpose: a task runs in one thread or one asyncio task at a time."""

    __slots__ = (
        "_config",
        "id",
        "input",
        "interrupts_asked",
        "loop",
        "name",
        "node",
        "ns",
        "null_resume",
        "path",
        "resume",
        "resuming",
        "sort_key",
        "subgraph_calls",
        "triggers",
        "writes",
    )

    def __init__(
        self,
        *,
        id: str,
        name: str,
        path: tuple[Any, ...],
        sort_key: tuple[int, Any],
        node: Node,
        input: Any,
        triggers: tuple[str, ...],
        ns: str,
        loop: Loop,
        resume: list[Any],
        null_resume: NullResume | None,
    ) -> None:
        self.id = id
        self.name = name
        self.path = path
        self.sort_key = sort_key
        self.node = node
        self.input = input
        self.triggers = triggers
        self.ns = ns
        self.loop = loop
        self.resume = resume
        self.null_resume = null_resume
        self.writes: list[tuple[str, Any]] = []
        self.interrupts_asked = 0
        self.subgraph_calls = 0
        self.resuming: bool | None = None
        self._config: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Task({self.name!r}, path={self.path!r})"

    @property
    def hidden(self) -> bool:
        return self.node.hidden

    @property
    def config(self) -> dict[str, Any]:
        """The ``RunnableConfig`` the node sees, built on first use."""
        if self._config is None:
            self._config = self.loop.services.task_config(self)
        return self._config

    @property
    def writer(self) -> Callable[[Any], None]:
        return self.loop.services.custom_writer(self)

    def interrupt(self, value: Any, response_schema: Any) -> Any:
        """Answer ``interrupt(value)``: a recorded answer, the step's unnamed resume value,
        or pause the run."""
        validate, schema = _resume_validator(response_schema)
        idx = self.interrupts_asked
        self.interrupts_asked += 1
        if idx < len(self.resume):
            answer = self.resume[idx]
            self.writes.append((RESUME, self.resume[: idx + 1]))
            return validate(answer)
        answer = self.null_resume.take() if self.null_resume is not None else None
        if answer is not None:
            checked = validate(answer)
            self.resume.append(answer)
            self.writes.append((RESUME, list(self.resume)))
            return checked
        raise GraphInterrupt(
            (
                Interrupt(
                    value=value,
                    id=interrupt_id(self.ns, len(self.resume)),
                    response_schema=schema,
                ),
            )
        )


def _identity(value: Any) -> Any:
    return value


def _resume_validator(schema: Any) -> tuple[Callable[[Any], Any], Any]:
    """Validation of resume values against a Python type (its JSON schema is what the
    interrupt shows); a JSON-schema dict is shown as is and not enforced."""
    if schema is None or isinstance(schema, dict):
        return _identity, schema
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(schema)

    def validate(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            mark_invalid_resume(exc)
            raise

    return validate, adapter.json_schema()
