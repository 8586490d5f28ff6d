"""What a node or path function declares about itself: its name, the schema of its first
parameter, the destinations its return annotation names."""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from cadenza.langgraph.types import Command

__all__ = ("command_ends", "first_param_schema", "literal_ends", "node_name", "path_name")


def node_name(action: Any) -> str:
    if callable(getattr(action, "get_name", None)):
        return action.get_name()
    return getattr(action, "__name__", action.__class__.__name__)


def first_param_schema(fn: Any) -> Any:
    """The first parameter's annotation when it is a class with annotations (a schema)."""
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else None
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the method, for its hints
    if target is None and inspect.isfunction(call):
        target = fn.__call__
    if target is None:
        return None, None
    try:
        hints = get_type_hints(target)
    except Exception:
        return None, None
    if not hints:
        return None, None
    try:
        first = next(iter(inspect.signature(target).parameters))
    except (StopIteration, TypeError, ValueError):
        return None, hints
    hint = hints.get(first)
    if isinstance(hint, type):
        try:
            if get_type_hints(hint):
                return hint, hints
        except Exception:
            return None, hints
    return None, hints


def command_ends(hints: dict[str, Any] | None) -> tuple[str, ...]:
    """Destinations declared by a ``-> Command[Literal["a", "b"]]`` return annotation."""
    if not hints or not (rtn := hints.get("return")):
        return ()
    if get_origin(rtn) is Union:
        for arg in get_args(rtn):
            if get_origin(arg) is Command:
                rtn = arg
                break
    if get_origin(rtn) is Command and (args := get_args(rtn)) and get_origin(args[0]) is Literal:
        return tuple(get_args(args[0]))
    return ()


def path_name(path: Any) -> str:
    if callable(getattr(path, "get_name", None)) and not inspect.isfunction(path):
        name = path.get_name()
    else:
        name = getattr(path, "__name__", None)
        if name == "<lambda>":
            name = None
    return name or "condition"


def literal_ends(path: Any) -> dict[Hashable, str] | None:
    fn = path
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        fn = getattr(path, "func", None) or getattr(type(path), "__call__", None)  # noqa: B004
    try:
        rtn = get_type_hints(fn).get("return") if fn is not None else None
    except Exception:
        return None
    if rtn is not None and get_origin(rtn) is Literal:
        return {name: name for name in get_args(rtn)}
    return None
