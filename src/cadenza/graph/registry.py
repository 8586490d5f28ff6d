"""Handlers by name, for workflows defined in YAML or JSON: a step names its handler
(``handler: charge_card``, or by default its own name) and the registry finds the function.

A name may also be an import path, ``package.module:function``, which needs no registration."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from cadenza.core.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])


class HandlerRegistry:
    """Names to functions. A name registered with ``branch=True`` collects several functions:
    a PARALLEL step without ``branches`` runs one branch per function registered under its
    name, in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._branches: dict[str, list[Callable[..., Any]]] = {}

    def register(self, name: str, fn: Callable[..., Any], *, branch: bool = False) -> None:
        if not callable(fn):
            raise DefinitionError(f"handler {name!r} must be a function, got {fn!r}")
        if branch:
            if name in self._handlers:
                raise DefinitionError(f"{name!r} is already a single handler, not branches")
            found = self._branches.setdefault(name, [])
            found[:] = [f for f in found if not _same_source(f, fn)]
            found.append(fn)
            return
        known = self._handlers.get(name)
        if known is not None and known is not fn and not _same_source(known, fn):
            raise DefinitionError(
                f"handler name {name!r} is taken by {_qualname(known)}; give {_qualname(fn)} "
                "another name"
            )
        if name in self._branches:
            raise DefinitionError(f"{name!r} already names parallel branches")
        self._handlers[name] = fn

    @overload
    def handler(self, fn: F, /) -> F: ...
    @overload
    def handler(self, name: str | None = None, *, branch: bool = False) -> Callable[[F], F]: ...

    def handler(self, fn: Any = None, /, *, branch: bool = False) -> Any:
        """Decorator: ``@handler`` (named after the function) or ``@handler("name")``."""
        if callable(fn):
            self.register(fn.__name__, fn)
            return fn
        name: str | None = fn

        def register(f: F) -> F:
            self.register(name or f.__name__, f, branch=branch)
            return f

        return register

    def resolve(self, ref: str) -> Callable[..., Any]:
        """The function a step names; raises :class:`DefinitionError` with suggestions."""
        if ":" in ref:
            return _import(ref)
        fn = self._handlers.get(ref)
        if fn is None:
            raise DefinitionError(self._unknown(ref))
        return fn

    def branches(self, name: str) -> list[Callable[..., Any]] | None:
        found = self._branches.get(name)
        return list(found) if found else None

    def names(self) -> Iterable[str]:
        return [*self._handlers, *self._branches]

    def _unknown(self, ref: str) -> str:
        known = sorted(self.names())
        close = difflib.get_close_matches(ref, known, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") or "none"
        return (
            f"no handler named {ref!r}{hint} (registered: {listed}); register one with "
            "@handler, name the module with `handlers:` (or --handlers), or write "
            "package.module:function"
        )


def _same_source(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """The same function imported twice under two module names (a file loaded as a script
    and as a package module): re-registering it is not a conflict."""
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_b is not None
        and code_a.co_filename == code_b.co_filename
        and a.__qualname__ == b.__qualname__
    )


def _import(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DefinitionError(f"handler {ref!r}: cannot import {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DefinitionError(f"handler {ref!r}: {module_name} has no function {attr!r}")
    return fn


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


#: The default registry, used by ``@handler`` and by workflows loaded from files.
handlers = HandlerRegistry()
handler = handlers.handler
