"""``Topic``: collects many writes per step (pending ``Send`` packets live in one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.errors import EmptyChannelError

__all__ = ("Topic",)


class Topic(BaseChannel[Sequence[Any], Any, list[Any]]):
    """Without ``accumulate`` the values of one step replace those of the previous one."""

    __slots__ = ("accumulate", "values")

    def __init__(self, typ: Any, accumulate: bool = False) -> None:
        super().__init__(typ)
        self.accumulate = accumulate
        self.values: list[Any] = []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topic) and other.accumulate == self.accumulate

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Self:
        new = self.__class__(self.typ, self.accumulate)
        new.key = self.key
        new.values = self.values.copy()
        return new

    def checkpoint(self) -> list[Any]:
        return list(self.values) if self.accumulate else self.values

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.accumulate)
        new.key = self.key
        if checkpoint is not MISSING:
            new.values = checkpoint[1] if isinstance(checkpoint, tuple) else checkpoint
        return new

    def update(self, values: Sequence[Any]) -> bool:
        updated = False
        if not self.accumulate:
            updated = bool(self.values)
            self.values = []
        flat = [v for value in values for v in (value if isinstance(value, list) else (value,))]
        if flat:
            self.values.extend(flat)
            updated = True
        return updated

    def get(self) -> list[Any]:
        if self.values:
            return list(self.values)
        raise EmptyChannelError()

    def is_available(self) -> bool:
        return bool(self.values)
