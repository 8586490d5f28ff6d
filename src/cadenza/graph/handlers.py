"""Turning user callables into :class:`Handler` values: sync or async, with or without a
context argument, decided once at definition time."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph.ir import Handler


def make_handler(fn: Callable[..., Any], *, path: str, inline: bool = False) -> Handler:
    if not callable(fn):
        raise DefinitionError(f"expected a function, got {fn!r}", path=path)
    target = fn.func if isinstance(fn, functools.partial) else fn
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    if not params:
        raise DefinitionError(
            f"{_name(fn)} must accept the state as its first argument "
            "(and optionally an ExecutionContext as its second)",
            path=path,
        )
    wants_context = len(params) >= 2 and _takes_context(params[1])
    if inline and is_async:
        inline = False
    return Handler(fn=fn, is_async=is_async, wants_context=wants_context, inline=inline)


def _takes_context(param: inspect.Parameter) -> bool:
    """A second parameter receives the context when it is required, or is named or annotated
    as one (a defaulted extra parameter, as in ``def f(state, limit=3)``, is left alone)."""
    if param.kind is inspect.Parameter.VAR_POSITIONAL or param.default is inspect.Parameter.empty:
        return True
    annotation = param.annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return param.name in ("ctx", "context") or name.endswith("ExecutionContext")


def step_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
