"""The channel interface: how one state key (or one routing signal) takes writes.

A channel instance holds one run's value. ``from_checkpoint`` makes a fresh instance from a
stored value, so the compiled graph keeps empty specs and each run gets its own copies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Self, TypeVar

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.errors import EmptyChannelError, InvalidUpdateError

Value = TypeVar("Value")
Update = TypeVar("Update")
C = TypeVar("C")

__all__ = ("BaseChannel", "EmptyChannelError", "GuardedValue", "ValueChannel")


class BaseChannel(Generic[Value, Update, C], ABC):
    __slots__ = ("key", "typ")

    def __init__(self, typ: Any, key: str = "") -> None:
        self.typ = typ
        self.key = key

    @property
    def ValueType(self) -> Any:
        return self.typ

    @property
    def UpdateType(self) -> Any:
        return self.typ

    def copy(self) -> Self:
        return self.from_checkpoint(self.checkpoint())

    def checkpoint(self) -> C | Any:
        """The value to store, or ``MISSING`` when empty."""
        try:
            return self.get()
        except EmptyChannelError:
            return MISSING

    @abstractmethod
    def from_checkpoint(self, checkpoint: C | Any) -> Self:
        """A new channel holding a stored value (``MISSING`` for empty)."""

    @abstractmethod
    def update(self, values: Sequence[Update]) -> bool:
        """Apply one step's writes (possibly none); return whether the channel changed."""

    @abstractmethod
    def get(self) -> Value:
        """The current value; raises ``EmptyChannelError`` when empty."""

    def is_available(self) -> bool:
        try:
            self.get()
            return True
        except EmptyChannelError:
            return False

    def consume(self) -> bool:
        """Called when a task that this channel triggered ran; return whether it changed."""
        return False

    def finish(self) -> bool:
        """Called when the run would otherwise end; return whether it changed."""
        return False


class ValueChannel(BaseChannel[Any, Any, Any]):
    """A channel holding one value (``MISSING`` while empty), stored as it is."""

    __slots__ = ("value",)

    def __init__(self, typ: Any, key: str = "") -> None:
        super().__init__(typ, key)
        self.value: Any = MISSING

    def get(self) -> Any:
        if self.value is MISSING:
            raise EmptyChannelError()
        return self.value

    def is_available(self) -> bool:
        return self.value is not MISSING

    def checkpoint(self) -> Any:
        return self.value


class GuardedValue(ValueChannel):
    """A value channel that, with ``guard`` (the default), takes at most one write per step
    (``EphemeralValue``, ``UntrackedValue``); without it, the last of several writes."""

    __slots__ = ("guard",)

    def __init__(self, typ: Any, guard: bool = True) -> None:
        super().__init__(typ)
        self.guard = guard

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.guard == self.guard

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Self:
        new = self.__class__(self.typ, self.guard)
        new.key = self.key
        new.value = self.value
        return new

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.guard)
        new.key = self.key
        if checkpoint is not MISSING:
            new.value = checkpoint
        return new

    def take(self, values: Sequence[Any]) -> None:
        """Keep the step's write (the last one when not guarded)."""
        if len(values) != 1 and self.guard:
            name = type(self).__name__
            raise InvalidUpdateError(
                f"At key '{self.key}': {name}(guard=True) can receive only one value "
                "per step. Use guard=False if you want to store any one of multiple values."
            )
        self.value = values[-1]
