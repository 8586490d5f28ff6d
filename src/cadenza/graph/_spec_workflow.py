"""Compiling the workflow-level parts of a workflow file: its handler modules, its state
schema (types and reducers) and its configuration, each problem located in the file."""

from __future__ import annotations

import importlib
import math
import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from pydantic import ValidationError

from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_context import SpecContext
from cadenza.graph._spec_refs import module_problem
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.spec import MAX_CONCURRENCY, MAX_RETRIES, MAX_SECONDS, FieldSpec
from cadenza.graph.spec_read import Problem

if TYPE_CHECKING:
    from cadenza.graph.spec_read import Loc

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "any": Any,
}
_REDUCERS: dict[str, Callable[[Any, Any], Any]] = {
    "append": operator.add,
    "add": operator.add,
    "merge": lambda old, new: {**old, **new},
    "max": max,
    "min": min,
}
# The file format's bounds on workflow settings, on top of WorkflowConfiguration's own.
_CONFIG_MOST: dict[str, float] = {
    "timeout": MAX_SECONDS,
    "max_parallel_steps": MAX_CONCURRENCY,
    "max_retries": MAX_RETRIES,
}


def check_modules(ctx: SpecContext, named: Sequence[str], given: Sequence[str]) -> None:
    """Refuse a handler module that is not a module name (``../evil``), imported or not:
    ``named`` come from the file's ``handlers``, ``given`` from the caller (``--handlers``)."""
    listed = isinstance(ctx.spec.handlers, list)
    for i, name in enumerate(named):
        problem = module_problem(name)
        if problem is not None:
            ctx.problem(("handlers", i) if listed else ("handlers",), problem)
    for name in given:
        problem = module_problem(name)
        if problem is not None:
            ctx.problems.append(Problem((), f"handler module: {problem}"))
    ctx.raise_problems()


def import_modules(ctx: SpecContext, modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            ctx.problem(("handlers",), f"cannot import handler module {name!r}: {exc}")
    ctx.raise_problems()


def state_type(ctx: SpecContext) -> Any:
    """The state schema: a TypedDict of the declared fields, reducers as annotations."""
    if not ctx.spec.state:
        return dict
    fields: dict[str, Any] = {}
    for key, field in ctx.spec.state.items():
        spec = field if isinstance(field, FieldSpec) else FieldSpec(type=field)
        tp = _TYPES[spec.type]
        if spec.reducer is not None:
            reducer = _reducer(ctx, spec.reducer, ("state", key, "reducer"))
            tp = Annotated[tp, reducer] if reducer is not None else tp
        fields[key] = tp
    return TypedDict(f"{ctx.spec.name}_state", fields, total=False)  # type: ignore[operator]


def _reducer(ctx: SpecContext, ref: str, path: Loc) -> Callable[[Any, Any], Any] | None:
    if ref in _REDUCERS:
        return _REDUCERS[ref]
    if ":" in ref:
        try:
            return ctx.refs.handler(ref)
        except DefinitionError as exc:
            ctx.problem(path, exc.message)
            return None
    ctx.problem(
        path, f"unknown reducer {ref!r}; use {', '.join(_REDUCERS)} or package.module:function"
    )
    return None


def configuration(ctx: SpecContext) -> WorkflowConfiguration:
    try:
        config = WorkflowConfiguration.model_validate(ctx.spec.config or {})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            key = error["loc"][0] if error["loc"] else ""
            message = (
                f"unknown setting {key!r}"
                if error["type"] == "extra_forbidden"
                else str(error["msg"])
            )
            ctx.problem(("config", key), message)
        return WorkflowConfiguration()
    for key, most in _CONFIG_MOST.items():
        value = getattr(config, key)
        if value is not None and not (math.isfinite(value) and value <= most):
            ctx.problem(("config", key), f"Input should be a finite number at most {most:,}")
    return config
