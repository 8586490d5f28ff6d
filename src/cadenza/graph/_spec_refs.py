"""The names a workflow file gives to code (handlers, tools, reducers, models, handler
modules): their syntax checked, then resolved by importing, or (``imports=False``) without
running any code.

Checking a file must not have to run it: ``cadenza validate --no-import`` resolves what needs
no import (registered names, ``scripted:`` models) and stands a placeholder in for the rest,
which fails if it is ever run. A malformed reference (``":"``, ``"../../evil:fn"``) is an
error either way; a name that only a module not imported could register is not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph.registry import HandlerRegistry
from cadenza.graph.spec_read import shorten

_HOW_HANDLER = "a registered name or package.module:function"
_CHECKED_ONLY = "the workflow was compiled without imports, to be checked, not run"
_HOW_MODEL = (
    "a registered name, provider:model (openai:gpt-4o-mini), scripted:FILE.json or "
    "package.module:attribute"
)


def dotted(name: str) -> bool:
    """``name`` is an importable module path: Python identifiers joined by dots (so neither a
    file path nor a relative import)."""
    return all(part.isidentifier() for part in name.split("."))


def handler_ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot name a handler, or ``None`` when its syntax is right."""
    if ":" in ref:
        module, _, function = ref.partition(":")
        if dotted(module) and function.isidentifier():
            return None
        return (
            f"{shorten(ref)} is not a handler reference: write package.module:function (a "
            "dotted Python module name, not a file path, then a function name)"
        )
    if _is_name(ref):
        return None
    return f"{shorten(ref)} is not a handler name: write {_HOW_HANDLER}"


def model_ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot name a model, or ``None`` when its syntax is right."""
    if ref.startswith("scripted:"):
        return None if ref.removeprefix("scripted:").strip() else "scripted: needs a file name"
    if ":" in ref:
        prefix, _, rest = ref.partition(":")
        if dotted(prefix.strip()) and rest.strip():
            return None
    elif ref.strip():
        return None
    return f"{shorten(ref)} is not a model reference: write {_HOW_MODEL}"


def module_problem(name: str) -> str | None:
    """Why ``name`` cannot name a handler module, or ``None``."""
    if dotted(name):
        return None
    return f"{shorten(name)} is not a module name: write a dotted Python name (package.module)"


class References:
    """Resolves a file's references for one compilation.

    ``imports``: import modules to find functions and models (running their code). Without
    it, ``lenient`` (the file or the caller named handler modules, which were not imported)
    lets names that only those modules could register pass as placeholders."""

    def __init__(
        self, registry: HandlerRegistry, *, imports: bool, modules_named: bool, base: Path
    ) -> None:
        self.registry = registry
        self.imports = imports
        self.lenient = not imports and modules_named
        self.base = base

    def handler(self, ref: str) -> Callable[..., Any]:
        """The function ``ref`` names; raises :class:`DefinitionError` saying why not."""
        problem = handler_ref_problem(ref)
        if problem is not None:
            raise DefinitionError(problem)
        if not self.imports and ":" in ref:
            return unimported(ref)
        try:
            return self.registry.resolve(ref)
        except DefinitionError:
            if self.lenient:
                return unimported(ref)
            raise
        except Exception as exc:  # the module imported, and raised doing so
            raise DefinitionError(
                f"handler {ref!r}: importing it raised {type(exc).__name__}: {exc}"
            ) from None

    def model(self, ref: str) -> Any:
        """The chat model ``ref`` names."""
        from cadenza.agents.registry import models, resolve_model

        problem = model_ref_problem(ref)
        if problem is not None:
            raise DefinitionError(problem)
        known = ref in models.names() or ref.startswith("scripted:")
        if not self.imports and not known and (":" in ref or self.lenient):
            return UnimportedModel(ref)
        try:
            return resolve_model(ref, base=self.base)
        except DefinitionError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"model {ref!r}: loading it raised {type(exc).__name__}: {exc}"
            ) from None

    def function_or_model(self, ref: str) -> Any:
        """A handler by name or import path, else a model (an ORCHESTRATOR's planner)."""
        try:
            return self.handler(ref)
        except DefinitionError as exc:
            as_handler = exc.message
        try:
            return self.model(ref)
        except DefinitionError as exc:
            raise DefinitionError(
                f"{shorten(ref)} is neither a handler ({as_handler}) nor a model ({exc.message})"
            ) from None


def unimported(ref: str) -> Callable[..., Any]:
    """A stand-in for the function ``ref`` names, which was not imported: it has the shape of
    a handler (state, ctx) and fails if a run ever calls it."""

    def not_imported(state: Any, ctx: Any) -> Any:
        raise DefinitionError(f"{ref!r} was not imported ({_CHECKED_ONLY})")

    not_imported.__qualname__ = f"unimported[{ref}]"
    not_imported.cadenza_unimported = ref  # type: ignore[attr-defined]
    return not_imported


def is_unimported(fn: Any) -> bool:
    """``fn`` is a stand-in made by :func:`unimported`."""
    return getattr(fn, "cadenza_unimported", None) is not None


def unimported_tool(ref: str, index: int) -> Any:
    """A tool standing for ``ref``; named by position, since the real tool's name is unknown
    without importing it (and two stand-ins must not collide)."""
    from cadenza.agents.tools import Tool

    def not_imported() -> str:
        raise DefinitionError(f"tool {ref!r} was not imported ({_CHECKED_ONLY})")

    return Tool(not_imported, name=f"unimported_{index}", description=f"stands for {ref}")


class UnimportedModel:
    """A stand-in for a model that was not loaded (a provider SDK or a module not imported)."""

    pricing = None

    def __init__(self, ref: str) -> None:
        self.name = ref

    async def chat(self, messages: Any, **options: Any) -> Any:
        raise DefinitionError(f"model {self.name!r} was not loaded ({_CHECKED_ONLY})")

    def __repr__(self) -> str:
        return f"UnimportedModel({self.name!r})"


def _is_name(ref: str) -> bool:
    """A registered handler name: a Python-like name that may also hold '-' and '.'."""
    return (
        bool(ref)
        and (ref[0].isalpha() or ref[0] == "_")
        and ref.replace("-", "_").replace(".", "_").isidentifier()
    )
