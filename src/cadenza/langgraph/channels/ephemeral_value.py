"""``EphemeralValue``: holds a write for one step, then clears (routing signals, input)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import ValueChannel
from cadenza.langgraph.errors import InvalidUpdateError

__all__ = ("EphemeralValue",)


class EphemeralValue(ValueChannel):
    __slots__ = ("guard",)

    def __init__(self, typ: Any, guard: bool = True) -> None:
        super().__init__(typ)
        self.guard = guard

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EphemeralValue) and other.guard == self.guard

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

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            if self.value is not MISSING:
                self.value = MISSING
                return True
            return False
        if len(values) != 1 and self.guard:
            raise InvalidUpdateError(
                f"At key '{self.key}': EphemeralValue(guard=True) can receive only one value "
                "per step. Use guard=False if you want to store any one of multiple values."
            )
        self.value = values[-1]
        return True
