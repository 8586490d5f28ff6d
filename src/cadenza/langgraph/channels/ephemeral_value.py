"""``EphemeralValue``: holds a write for one step, then clears (routing signals, input)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import GuardedValue

__all__ = ("EphemeralValue",)


class EphemeralValue(GuardedValue):
    __slots__ = ()

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            if self.value is not MISSING:
                self.value = MISSING
                return True
            return False
        self.take(values)
        return True
