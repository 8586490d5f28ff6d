"""Calling user code the way LangGraph does: the input first, then whichever of
``config``, ``writer``, ``store``, ``runtime`` and ``previous`` the signature asks for."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cadenza.langgraph.types import StreamWriter

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("Caller", "is_async_callable")

_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or (
        callable(fn) and inspect.iscoroutinefunction(type(fn).__call__)
    )


def _annotation_names(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else repr(annotation)


def _wants(name: str, annotation: Any) -> bool:
    """Whether a parameter called ``name`` with this annotation is injected."""
    empty = annotation is inspect.Parameter.empty
    if name == "config":
        return empty or "RunnableConfig" in _annotation_names(annotation)
    if name == "writer":
        return empty or annotation == StreamWriter or annotation == "StreamWriter"
    if name == "store":
        return empty or "BaseStore" in _annotation_names(annotation)
    return name in ("runtime", "previous")


def _injected(fn: Callable[..., Any]) -> tuple[tuple[str, bool], ...]:
    """(name, required) of each injectable parameter after the first."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ()
    out = []
    for p in params.values():
        if p.kind not in _KINDS:
            continue
        if _wants(p.name, p.annotation):
            out.append((p.name, p.default is inspect.Parameter.empty))
        elif p.name == "config":
            warnings.warn(
                "The 'config' parameter should be typed as 'RunnableConfig' or "
                f"'RunnableConfig | None', not '{p.annotation}'. ",
                UserWarning,
                stacklevel=5,
            )
    # the first positional parameter is the state, never injected
    first = next(iter(params), None)
    return tuple(x for x in out if x[0] != first)


class Caller:
    """A compiled way to call one function, runnable or graph with a task's input."""

    __slots__ = ("fn", "inject", "is_async", "kind", "name")

    def __init__(self, fn: Any, name: str) -> None:
        self.name = name
        self.fn = fn
        if getattr(fn, "_is_cadenza_graph", False):
            self.kind = "graph"
            self.is_async = False
            self.inject: tuple[tuple[str, bool], ...] = ()
        elif not inspect.isfunction(fn) and hasattr(fn, "invoke") and hasattr(fn, "ainvoke"):
            self.kind = "runnable"
            self.is_async = False
            self.inject = ()
        elif callable(fn):
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                raise TypeError(f"node {name!r}: generator functions cannot be nodes")
            self.kind = "function"
            self.is_async = is_async_callable(fn)
            self.inject = _injected(fn)
        else:
            raise TypeError(
                f"Expected a Runnable, callable or dict. Instead got an unsupported type: "
                f"{type(fn)}"
            )

    def _kwargs(self, task: Task) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, _required in self.inject:
            if name == "config":
                kwargs[name] = task.config
            elif name == "writer":
                kwargs[name] = task.writer
            elif name == "store":
                kwargs[name] = task.loop.store
            elif name == "runtime":
                kwargs[name] = task.loop.services.runtime(task)
            else:
                kwargs[name] = None
        return kwargs

    def call(self, value: Any, task: Task) -> Any:
        kind = self.kind
        if kind == "function":
            if self.is_async:
                raise TypeError(
                    f'No synchronous function provided to "{self.name}".\nEither initialize '
                    "with a synchronous function or invoke via the async API (ainvoke, "
                    "astream, etc.)"
                )
            if self.inject:
                return self.fn(value, **self._kwargs(task))
            return self.fn(value)
        if kind == "graph":
            return self.fn.run_as_node(value, task)
        return self.fn.invoke(value, task.config)

    async def acall(self, value: Any, task: Task) -> Any:
        kind = self.kind
        if kind == "function":
            kwargs = self._kwargs(task) if self.inject else {}
            if self.is_async:
                return await self.fn(value, **kwargs)
            return await asyncio.to_thread(self.fn, value, **kwargs)
        if kind == "graph":
            return await self.fn.arun_as_node(value, task)
        return await self.fn.ainvoke(value, task.config)
