"""The channel interface: how one state key (or one routing signal) takes writes.

A channel instance holds one run's value. ``from_checkpoint`` makes a fresh instance from a
stored value, so the compiled graph keeps empty specs and each run gets its own copies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Self, TypeVar

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.errors import EmptyChannelError

Value = TypeVar("Value")
Update = TypeVar("Update")
C = TypeVar("C")

__all__ = ("BaseChannel", "EmptyChannelError", "ValueChannel")


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
