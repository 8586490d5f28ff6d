"""Public data types of the graph API: ``Send``, ``Command``, ``interrupt``, ``Interrupt``,
``RetryPolicy``, ``StateSnapshot`` and friends, with LangGraph's names and fields."""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from cadenza.langgraph._keys import ROOT
from cadenza.langgraph._stream_types import (
    CheckpointPayload,
    CheckpointStreamPart,
    CheckpointTask,
    CustomStreamPart,
    DebugPayload,
    DebugStreamPart,
    MessagesStreamPart,
    StreamPart,
    TaskPayload,
    TaskResultPayload,
    TasksStreamPart,
    UpdatesStreamPart,
    ValuesStreamPart,
)

__all__ = (
    "All",
    "Checkpointer",
    "StreamMode",
    "StreamWriter",
    "StreamPart",
    "ValuesStreamPart",
    "UpdatesStreamPart",
    "MessagesStreamPart",
    "CustomStreamPart",
    "CheckpointStreamPart",
    "TasksStreamPart",
    "DebugStreamPart",
    "TaskPayload",
    "TaskResultPayload",
    "CheckpointTask",
    "CheckpointPayload",
    "DebugPayload",
    "RetryPolicy",
    "TimeoutPolicy",
    "CachePolicy",
    "TracePolicy",
    "omit_payload",
    "Interrupt",
    "StateUpdate",
    "PregelTask",
    "PregelExecutableTask",
    "StateSnapshot",
    "Send",
    "Command",
    "Durability",
    "interrupt",
    "Overwrite",
    "GraphOutput",
    "ensure_valid_checkpointer",
)

N = TypeVar("N")
OutputT = TypeVar("OutputT")

Durability = Literal["sync", "async", "exit"]
All = Literal["*"]
# None | bool | BaseCheckpointSaver; the saver class is not imported, as it is optional
Checkpointer = None | bool | Any
StreamMode = Literal["values", "updates", "checkpoints", "tasks", "debug", "messages", "custom"]
StreamWriter = Callable[[Any], None]


def ensure_valid_checkpointer(checkpointer: Any) -> Any:
    """Refuse anything but ``None``, ``True``, ``False`` or a ``BaseCheckpointSaver``."""
    if checkpointer in (None, True, False):
        return checkpointer
    try:
        from langgraph.checkpoint.base import BaseCheckpointSaver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TypeError(
            "a checkpointer needs langgraph-checkpoint: pip install 'cadenza[langgraph]'"
        ) from exc
    if not isinstance(checkpointer, BaseCheckpointSaver):
        raise TypeError(
            "Invalid checkpointer provided. Expected an instance of `BaseCheckpointSaver`, "
            f"`True`, `False`, or `None`. Received {type(checkpointer).__name__}. Pass a "
            "proper saver (e.g., InMemorySaver, SqliteSaver)."
        )
    return checkpointer


def default_retry_on(exc: Exception) -> bool:
    """LangGraph's default: retry network and unknown errors, not programming errors."""
    if isinstance(exc, ConnectionError):
        return True
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return 500 <= exc.response.status_code < 600
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.HTTPError):
        return 500 <= exc.response.status_code < 600 if exc.response else True
    return not isinstance(
        exc,
        (
            ValueError,
            TypeError,
            ArithmeticError,
            ImportError,
            LookupError,
            NameError,
            SyntaxError,
            RuntimeError,
            ReferenceError,
            StopIteration,
            StopAsyncIteration,
            OSError,
        ),
    )


class RetryPolicy(NamedTuple):
    """How a failing node is retried: exponential backoff with optional jitter."""

    initial_interval: float = 0.5
    backoff_factor: float = 2.0
    max_interval: float = 128.0
    max_attempts: int = 3
    jitter: bool = True
    retry_on: type[Exception] | Sequence[type[Exception]] | Callable[[Exception], bool] = (
        default_retry_on
    )


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """A per-attempt time limit for a node (enforced for async nodes)."""

    run_timeout: float | None = None
    idle_timeout: float | None = None
    refresh_on: Literal["auto", "heartbeat"] = "auto"

    @classmethod
    def coerce(cls, value: float | timedelta | TimeoutPolicy | None) -> TimeoutPolicy | None:
        if value is None:
            return None
        if not isinstance(value, TimeoutPolicy):
            value = cls(run_timeout=value)  # type: ignore[arg-type]
        run = _seconds(value.run_timeout, "run_timeout")
        idle = _seconds(value.idle_timeout, "idle_timeout")
        if run is None and idle is None:
            return None
        return cls(run_timeout=run, idle_timeout=idle, refresh_on=value.refresh_on)


def _seconds(value: float | timedelta | None, field: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"{field} must be positive, got {value!r}")
    return seconds


def _freeze(obj: Any, depth: int = 10) -> Hashable:
    """A hashable form of ``obj``: mappings as sorted pairs, sequences as tuples."""
    if isinstance(obj, Hashable) or depth <= 0:
        return obj
    if isinstance(obj, Mapping):
        return tuple(sorted((k, _freeze(v, depth - 1)) for k, v in obj.items()))
    if isinstance(obj, Sequence):
        return tuple(_freeze(x, depth - 1) for x in obj)
    if hasattr(obj, "tobytes"):  # numpy arrays and the like
        return (type(obj).__name__, obj.tobytes(), getattr(obj, "shape", None))
    return obj


def _default_cache_key(*args: Any, **kwargs: Any) -> bytes:
    """The input pickled as LangGraph pickles it, so both compute the same cache keys."""
    import pickle

    return pickle.dumps((_freeze(args), _freeze(kwargs)), protocol=5, fix_imports=False)


@dataclass(kw_only=True, slots=True, frozen=True)
class CachePolicy(Generic[N]):
    """Caching of a node's writes (with ``compile(cache=...)``): ``key_func`` makes the key
    from the node's input, ``ttl`` is the entry's lifetime in seconds (``None``: forever)."""

    key_func: Callable[..., str | bytes] = _default_cache_key
    ttl: int | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class TracePolicy:
    """How a node's run is traced; accepted for compatibility."""

    process_inputs: Callable[[Any], Any] | None = None
    process_outputs: Callable[[Any], Any] | None = None


def omit_payload(_value: Any) -> dict[str, Any]:
    return {"omitted": True}


_DEFAULT_INTERRUPT_ID = "placeholder-id"


@dataclass(init=False, slots=True)
class Interrupt:
    """A value a node surfaced when it paused the run, with the id a resume can name."""

    value: Any
    id: str
    response_schema: Any = None

    def __init__(
        self, value: Any, id: str = _DEFAULT_INTERRUPT_ID, *, response_schema: Any = None
    ) -> None:
        self.value = value
        self.id = id
        self.response_schema = response_schema

    @classmethod
    def from_ns(cls, value: Any, ns: str, *, response_schema: Any = None) -> Interrupt:
        from cadenza.langgraph._engine.ids import interrupt_id

        return cls(value=value, id=interrupt_id(ns, 0), response_schema=response_schema)


class StateUpdate(NamedTuple):
    values: dict[str, Any] | None
    as_node: str | None = None
    task_id: str | None = None


class PregelTask(NamedTuple):
    """A task of a step as ``StateSnapshot.tasks`` reports it."""

    id: str
    name: str
    path: tuple[str | int | tuple, ...]
    error: Exception | None = None
    interrupts: tuple[Interrupt, ...] = ()
    state: Any = None
    result: Any | None = None


@dataclass(frozen=True, slots=True)
class PregelExecutableTask:
    """A task ready to run (exported for compatibility; the executor uses its own)."""

    name: str
    input: Any
    proc: Any
    writes: Any
    config: dict[str, Any]
    triggers: Sequence[str]
    retry_policy: Sequence[RetryPolicy]
    cache_key: Any
    id: str
    path: tuple[str | int | tuple, ...]


class StateSnapshot(NamedTuple):
    """The state of a thread at the start of a step."""

    values: dict[str, Any] | Any
    next: tuple[str, ...]
    config: dict[str, Any]
    metadata: dict[str, Any] | None
    created_at: str | None
    parent_config: dict[str, Any] | None
    tasks: tuple[PregelTask, ...]
    interrupts: tuple[Interrupt, ...]


class Send:
    """Run ``node`` in the next step with ``arg`` as its input (one task per ``Send``)."""

    __slots__ = ("arg", "node", "timeout")

    def __init__(
        self, /, node: str, arg: Any, *, timeout: float | timedelta | TimeoutPolicy | None = None
    ) -> None:
        self.node = node
        self.arg = arg
        self.timeout = TimeoutPolicy.coerce(timeout)

    def __hash__(self) -> int:
        return hash((self.node, self.arg, self.timeout))

    def __repr__(self) -> str:
        if self.timeout is None:
            return f"Send(node={self.node!r}, arg={self.arg!r})"
        return f"Send(node={self.node!r}, arg={self.arg!r}, timeout={self.timeout!r})"

    def __eq__(self, value: object) -> bool:
        return (
            isinstance(value, Send)
            and self.node == value.node
            and self.arg == value.arg
            and self.timeout == value.timeout
        )


@dataclass(kw_only=True, slots=True, frozen=True)
class Command(Generic[N]):
    """Update the state and choose what runs next, or resume an interrupted run.

    ``graph=Command.PARENT`` sends the command to the graph that runs this subgraph."""

    graph: str | None = None
    update: Any | None = None
    resume: dict[str, Any] | Any | None = None
    goto: Send | Sequence[Send | N] | N = ()

    PARENT: ClassVar[Literal["__parent__"]] = "__parent__"

    def __repr__(self) -> str:
        contents = ", ".join(f"{k}={v!r}" for k, v in asdict(self).items() if v)
        return f"Command({contents})"

    def _update_as_tuples(self) -> Sequence[tuple[str, Any]]:
        update = self.update
        if isinstance(update, dict):
            return list(update.items())
        if isinstance(update, (list, tuple)) and all(
            isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str) for t in update
        ):
            return update
        from cadenza.langgraph.graph._schema import object_fields, object_updates

        if keys := object_fields(type(update)):
            return object_updates(update, keys)
        if update is not None:
            return [(ROOT, update)]
        return []


@dataclass(slots=True)
class Overwrite:
    """Write ``value`` to a reducer key as it is, bypassing the reducer."""

    value: Any
    type: Literal["__overwrite__"] = "__overwrite__"


@dataclass(frozen=True)
class GraphOutput(Generic[OutputT]):
    """What ``invoke(..., version="v2")`` returns: the output and the pending interrupts."""

    value: OutputT
    interrupts: tuple[Interrupt, ...] = ()


def interrupt(value: Any, *, response_schema: Any = None) -> Any:
    """Pause the run and surface ``value``; on resume, return the value given with
    ``Command(resume=...)``. The node runs again from its start when resumed, and its
    earlier ``interrupt`` calls return their recorded answers in order."""
    from cadenza.langgraph._context import current_task

    return current_task("interrupt").interrupt(value, response_schema)
