"""Letting a strict checkpoint serializer read back what the facade stores.

LangGraph's serializer, in strict mode (``LANGGRAPH_STRICT_MSGPACK=true``), only revives
types on an allowlist. A graph compiled in that mode gets a saver whose allowlist adds the
facade's own types (``Send``, ``Interrupt``...) and the classes its state schemas name,
as LangGraph does for its graphs; without strict mode the saver is used as given."""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Iterable
from typing import Any, get_args, get_type_hints

__all__ = ("with_facade_allowlist",)

_FACADE_TYPES = (
    ("cadenza.langgraph.types", "Send"),
    ("cadenza.langgraph.types", "Interrupt"),
    ("cadenza.langgraph.types", "Command"),
    ("cadenza.langgraph.types", "Overwrite"),
)


def _strict() -> bool:
    return os.getenv("LANGGRAPH_STRICT_MSGPACK", "false").lower() in ("1", "true", "yes")


def _classes(typ: Any, out: set[tuple[str, str]], seen: set[int]) -> None:
    if id(typ) in seen:
        return
    seen.add(id(typ))
    for arg in get_args(typ):
        _classes(arg, out, seen)
    if not isinstance(typ, type):
        return
    is_model = hasattr(typ, "model_fields")
    if is_model or dataclasses.is_dataclass(typ) or issubclass(typ, enum.Enum):
        out.add((typ.__module__, typ.__name__))
    if is_model or dataclasses.is_dataclass(typ) or hasattr(typ, "__required_keys__"):
        try:
            hints = get_type_hints(typ)
        except Exception:
            return
        for hint in hints.values():
            _classes(hint, out, seen)


def with_facade_allowlist(saver: Any, schemas: Iterable[Any]) -> Any:
    """``saver`` with the facade's types allowed, when strict mode is on and it can."""
    if not _strict() or saver in (None, True, False) or not hasattr(saver, "with_allowlist"):
        return saver
    allowed: set[tuple[str, str]] = set(_FACADE_TYPES)
    seen: set[int] = set()
    for schema in schemas:
        _classes(schema, allowed, seen)
    return saver.with_allowlist(allowed)
