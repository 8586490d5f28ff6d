"""State values to the plain data the CEL engine reads, measured on the way.

Conversion does three things in one walk over the data:

* it turns models, dataclasses, enums, tuples and subclasses of the plain types into plain
  data, and refuses what has no CEL equivalent (:class:`Unsupported`);
* it keeps only what the expression can read: for ``order.total > 100`` only
  ``order["total"]`` is converted, however large the rest of ``order`` is (``paths``);
* it measures the result, depth by depth (:class:`Profile`), so that the cost estimate can be
  made for the data at hand, and refuses data nested deeper than ``MAX_DEPTH`` or larger than
  ``MAX_VALUES`` values (instead of exhausting the stack or memory).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import BaseModel

from cadenza.graph._cel_cost import SCALAR, Shape, shape

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUES",
    "Paths",
    "Profile",
    "TooLarge",
    "Unsupported",
    "convert",
    "keys_at",
    "promote",
]

MAX_DEPTH = 64
MAX_VALUES = 2_000_000

# What an expression reads of a name: ``None`` for all of it, else the fields it selects
# (each with what it reads of that field).
Paths = dict[str, "Paths | None"]

_PLAIN = frozenset({str, int, float, bool, type(None), bytes, datetime, timedelta})
_SCALARS = frozenset({int, float, bool, type(None), datetime, timedelta})


class Unsupported(Exception):
    """A state value has no CEL equivalent (the message names its type)."""


class TooLarge(Exception):
    """The data is nested too deeply or holds too many values (the message says which)."""


class Profile:
    """The largest entry count, value count and text size found at each depth of one value,
    and whether every value at a depth is a scalar."""

    __slots__ = ("levels", "values")

    def __init__(self) -> None:
        self.levels: list[list[float]] = []  # [n, items, chars] at each depth
        self.values = 0

    def record(self, depth: int, n: float, items: float, chars: float) -> None:
        """Note a string or container at ``depth`` (scalars need no note: a depth with
        nothing else on it reads as scalars)."""
        levels = self.levels
        while depth >= len(levels):  # entries are measured before their container
            levels.append([0.0, 0.0, 0.0])
        level = levels[depth]
        if n > level[0]:
            level[0] = n
        if items > level[1]:
            level[1] = items
        if chars > level[2]:
            level[2] = chars

    def within(self, limits: Sequence[tuple[float, float, float]]) -> bool:
        """Whether the value is no larger, depth by depth, than ``limits`` (entries, values
        and text at each depth, as many depths as there are limits)."""
        return len(self.levels) <= len(limits) and all(
            level[0] <= n and level[1] <= items and level[2] <= chars
            for level, (n, items, chars) in zip(self.levels, limits, strict=False)
        )

    def shape(self) -> Shape:
        found: Shape | None = None
        for n, items, chars in reversed(self.levels):
            found = shape(n, items, chars, found)
        return found or SCALAR


def convert(value: Any, paths: Paths | None, profile: Profile) -> Any:
    """``value`` as plain CEL data, reduced to ``paths`` (``None``: all of it)."""
    return _convert(value, paths, profile, 0)[0]


def _convert(value: Any, paths: Paths | None, profile: Profile, depth: int) -> tuple[Any, int, int]:
    """The converted value, the number of values in it and the bytes of text in it."""
    if depth >= MAX_DEPTH:
        raise TooLarge(f"nested deeper than {MAX_DEPTH} levels")
    profile.values += 1
    if profile.values > MAX_VALUES:
        raise TooLarge(f"holds more than {MAX_VALUES:,} values")
    kind = type(value)
    if kind not in _PLAIN:
        value = _plain(value)
        kind = type(value)
    if kind is str or kind is bytes:
        size = _size(value)
        profile.record(depth, size, 1, size)
        return value, 1, size
    if kind in _SCALARS:
        return value, 1, 0
    items, chars, key_chars = 1, 0, 0
    below: Paths | None = None
    if kind is dict:
        out: dict[Any, Any] = {}
        for key, entry in value.items():
            key = _key(key)
            if paths is not None:
                if key not in paths or type(key) is not str:
                    continue
                below = paths[key]
            converted, entry_items, entry_chars = _convert(entry, below, profile, depth + 1)
            out[key] = converted
            if type(key) is str:
                size = _size(key)
                key_chars = max(key_chars, size)
                chars += size
            items += entry_items + 1
            chars += entry_chars
        if key_chars:
            profile.record(depth + 1, key_chars, 1, key_chars)
        profile.record(depth, len(out), items, chars)
        return out, items, chars
    converted_list = []
    for entry in value:
        converted, entry_items, entry_chars = _convert(entry, None, profile, depth + 1)
        converted_list.append(converted)
        items += entry_items
        chars += entry_chars
    profile.record(depth, len(converted_list), items, chars)
    return converted_list, items, chars


def _size(text: str | bytes) -> int:
    """Bytes of text (UTF-8 for a string)."""
    if type(text) is bytes or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _plain(value: Any) -> Any:
    """A value of one of the plain types (a list or dict for containers); the contents are
    converted by the caller."""
    if isinstance(value, Enum):
        return _plain(value.value) if type(value.value) not in _PLAIN else value.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    for base in (bool, int, float, str, bytes):  # subclasses of the plain types
        if isinstance(value, base):
            return base(value)
    if isinstance(value, datetime | timedelta):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, date):
        return value.isoformat()
    raise Unsupported(type(value).__name__)


def _key(key: Any) -> Any:
    key = key.value if isinstance(key, Enum) else key
    if type(key) not in (str, int, bool):
        raise Unsupported(f"{type(key).__name__} (as a map key)")
    return key


def promote(value: Any) -> Any:
    """The same data with every int (not bool) turned into a float."""
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is dict:
        return {k: promote(v) for k, v in value.items()}
    if kind is list:
        return [promote(v) for v in value]
    return value


def keys_at(state: Any, parts: list[str]) -> list[str] | None:
    """The keys of the mapping at ``parts`` in ``state`` (None if there is none there), for
    error messages."""
    node: Any = state
    for part in (*parts, None):
        if not isinstance(node, Mapping):
            try:
                node = _plain(node)
            except Unsupported:
                return None
            if not isinstance(node, dict):
                return None
        if part is None:
            return [str(key) for key in node]
        node = node.get(part)
    return None
