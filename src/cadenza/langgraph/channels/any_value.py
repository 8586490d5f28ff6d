"""``AnyValue`` and ``UntrackedValue``: a key that takes many writes per step and keeps the
last; the untracked one is never stored in a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import GuardedValue, ValueChannel

__all__ = ("AnyValue", "UntrackedValue")


class AnyValue(ValueChannel):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyValue)

    __hash__ = None  # type: ignore[assignment]

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.key)
        if checkpoint is not MISSING:
            new.value = checkpoint
        return new

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            if self.value is MISSING:
                return False
            self.value = MISSING
            return True
        self.value = values[-1]
        return True


class UntrackedValue(GuardedValue):
    __slots__ = ()

    def checkpoint(self) -> Any:
        return MISSING

    def from_checkpoint(self, checkpoint: Any) -> Self:
        return super().from_checkpoint(MISSING)

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        self.take(values)
        return True
