"""``NamedBarrierValue``: a join; available once every named source has written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.errors import EmptyChannelError, InvalidUpdateError

__all__ = ("NamedBarrierValue", "NamedBarrierValueAfterFinish")


class NamedBarrierValue(BaseChannel[None, str, set[str]]):
    __slots__ = ("names", "seen")

    def __init__(self, typ: Any, names: set[str]) -> None:
        super().__init__(typ)
        self.names = names
        self.seen: set[str] = set()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.names == self.names  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Self:
        new = self.__class__(self.typ, self.names)
        new.key = self.key
        new.seen = self.seen.copy()
        return new

    def checkpoint(self) -> set[str]:
        return set(self.seen)

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.names)
        new.key = self.key
        if checkpoint is not MISSING:
            new.seen = checkpoint
        return new

    def update(self, values: Sequence[str]) -> bool:
        updated = False
        for value in values:
            if value not in self.names:
                raise InvalidUpdateError(f"At key '{self.key}': Value {value} not in {self.names}")
            if value not in self.seen:
                self.seen.add(value)
                updated = True
        return updated

    def get(self) -> None:
        if self.seen != self.names:
            raise EmptyChannelError()
        return None

    def is_available(self) -> bool:
        return self.seen == self.names

    def consume(self) -> bool:
        if self.seen == self.names:
            self.seen = set()
            return True
        return False


class NamedBarrierValueAfterFinish(NamedBarrierValue):
    """A join for a deferred node: complete and the run otherwise finished."""

    __slots__ = ("finished",)

    def __init__(self, typ: Any, names: set[str]) -> None:
        super().__init__(typ, names)
        self.finished = False

    def copy(self) -> Self:
        new = super().copy()
        new.finished = self.finished
        return new

    def checkpoint(self) -> tuple[set[str], bool]:  # type: ignore[override]
        return (set(self.seen), self.finished)

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.names)
        new.key = self.key
        if checkpoint is not MISSING:
            new.seen, new.finished = checkpoint
        return new

    def get(self) -> None:
        if not self.finished or self.seen != self.names:
            raise EmptyChannelError()
        return None

    def is_available(self) -> bool:
        return self.finished and self.seen == self.names

    def consume(self) -> bool:
        if self.finished and self.seen == self.names:
            self.finished = False
            self.seen = set()
            return True
        return False

    def finish(self) -> bool:
        if not self.finished and self.seen == self.names:
            self.finished = True
            return True
        return False
