"""A scope is the state a group of steps sees: the run's own state, or a parallel/map
branch's private view that joins the parent when the branch finishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Scope:
    key: str  # "" for the run itself, else the branch path ("drafts[1]")
    state: dict[str, Any]
    item: Any = None
    index: int | None = None

    def child(self, key: str, buffered: list[dict[str, Any]], reducers: Any, **extra: Any) -> Scope:
        from cadenza.core.state import apply_update

        state = dict(self.state)
        for update in buffered:
            apply_update(state, update, reducers)
        item = extra.get("item", self.item)
        index = extra.get("index", self.index)
        return Scope(key=key, state=state, item=item, index=index)
