"""``BinaryOperatorAggregate``: a reducer key; every write is folded in with ``operator``."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Sequence
from typing import Any, NotRequired, Required, Self

from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import ValueChannel
from cadenza.langgraph.errors import (
    ErrorCode,
    InvalidUpdateError,
    create_error_message,
)
from cadenza.langgraph.types import Overwrite

__all__ = ("BinaryOperatorAggregate", "as_overwrite")

_OVERWRITE = "__overwrite__"


def as_overwrite(value: Any) -> tuple[bool, Any]:
    """``(True, v)`` when ``value`` asks to replace the reducer's value with ``v``: an
    ``Overwrite``, ``{"__overwrite__": v}``, or an ``Overwrite`` that went through JSON."""
    if isinstance(value, Overwrite):
        return True, value.value
    if isinstance(value, dict):
        if len(value) == 1 and _OVERWRITE in value:
            return True, value[_OVERWRITE]
        if value.get("type") == _OVERWRITE and "value" in value:
            return True, value["value"]
    return False, None


def _base_type(t: Any) -> Any:
    if hasattr(t, "__origin__"):
        if t.__origin__ in (Required, NotRequired):
            return _base_type(t.__args__[0])
        return _base_type(t.__origin__)
    return t


_ABSTRACT = {
    collections.abc.Sequence: list,
    collections.abc.MutableSequence: list,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
    collections.abc.Mapping: dict,
    collections.abc.MutableMapping: dict,
}


def _same_reducer(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # lambdas all share one name, so two of them cannot be told apart
    if getattr(a, "__name__", "") == "<lambda>" or getattr(b, "__name__", "") == "<lambda>":
        return True
    return a is b


class BinaryOperatorAggregate(ValueChannel):
    """Starts at ``typ()`` when the type can be built without arguments (``[]`` for a
    list), so the key reads as that empty value before any write."""

    __slots__ = ("operator",)

    def __init__(self, typ: Any, operator: Callable[[Any, Any], Any]) -> None:
        super().__init__(typ)
        self.operator = operator
        base = _base_type(typ)
        base = _ABSTRACT.get(base, base)
        try:
            self.value = base()
        except Exception:
            self.value = MISSING

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BinaryOperatorAggregate) and _same_reducer(
            self.operator, other.operator
        )

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Self:
        new = self.__class__(self.typ, self.operator)
        new.key = self.key
        new.value = self.value
        return new

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.operator)
        new.key = self.key
        if checkpoint is not MISSING:
            new.value = getattr(checkpoint, "_delta_snapshot_value", checkpoint)
        return new

    def update(self, values: Sequence[Any]) -> bool:
        if not values:
            return False
        if self.value is MISSING:
            self.value = values[0]
            values = values[1:]
        overwritten = False
        for value in values:
            is_overwrite, replacement = as_overwrite(value)
            if is_overwrite:
                if overwritten:
                    raise InvalidUpdateError(
                        create_error_message(
                            message="Can receive only one Overwrite value per super-step.",
                            error_code=ErrorCode.INVALID_CONCURRENT_GRAPH_UPDATE,
                        )
                    )
                self.value = replacement
                overwritten = True
            elif not overwritten:
                self.value = self.operator(self.value, value)
        return True
