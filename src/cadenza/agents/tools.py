"""Tools: plain typed Python functions (sync or async) that a model may call.

The JSON schema a model sees is built from the function's signature (pydantic), with the
parameters' descriptions taken from its docstring (Google ``Args:``, numpy ``Parameters`` or
Sphinx ``:param x:``). Arguments are validated before the call; a validation error, an
exception or a timeout in the tool comes back as an error observation the model can read and
act on, never as a crash of the step. A parameter annotated :class:`ExecutionContext` is left
out of the schema and receives the call's context (its ``idempotency_key`` is stable across a
crash and a resume, so side effects can be de-duplicated)."""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, overload

import docstring_parser
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from cadenza.agents.model import ToolSpec
from cadenza.core.context import ExecutionContext
from cadenza.core.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool call gave back to the model: the observation text, and whether it is an
    error (bad arguments, an exception, a timeout)."""

    content: str
    error: bool = False


class Tool:
    """A function a model may call. Calling the ``Tool`` itself calls the function unchanged,
    so a decorated function stays usable (and testable) as plain Python."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"a tool is a function, got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "")
        where = f"tool {self.name!r}"
        if not _NAME.match(self.name):
            raise DefinitionError(
                f"{where}: a tool name is 1-64 letters, digits, '_' or '-' (what model APIs "
                "accept); give another with @tool(name=...)"
            )
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise DefinitionError(f"{where}: timeout must be a positive number of seconds")
        self.timeout = timeout
        summary, params_doc = parse_docstring(inspect.getdoc(fn) or "")
        self.description = description if description is not None else summary
        self._arguments, self._context_param = _arguments_model(fn, self.name, params_doc)
        self.parameters = _clean_schema(self._arguments.model_json_schema())
        target = fn.func if isinstance(fn, functools.partial) else fn
        self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - objects with an async __call__
        )
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def spec(self) -> ToolSpec:
        """What the model is told about this tool."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    @property
    def wants_context(self) -> bool:
        return self._context_param is not None

    def describe(self) -> list[str]:
        """The parts of the tool that make a workflow's definition (and so its version)."""
        qualname = getattr(self.fn, "__qualname__", None) or type(self.fn).__qualname__
        schema = json.dumps(self.parameters, sort_keys=True, separators=(",", ":"))
        return [self.name, qualname, self.description, schema]

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of a call, validated and converted (pydantic models, enums);
        raises :class:`pydantic.ValidationError`."""
        model = self._arguments.model_validate(dict(arguments))
        return {name: getattr(model, name) for name in type(model).model_fields}

    async def run(
        self,
        arguments: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        executor: Executor | None = None,
    ) -> ToolOutcome:
        """Validate and call; every failure becomes an error observation. Sync functions run
        in ``executor`` (a thread pool) so they never block the event loop."""
        try:
            kwargs = self.validate(arguments if isinstance(arguments, Mapping) else {})
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            return ToolOutcome(
                f"Error: invalid arguments for tool {self.name!r}: {problems}. Call it again "
                "with arguments that match its schema.",
                error=True,
            )
        if self._context_param is not None:
            kwargs[self._context_param] = ctx
        try:
            if self.is_async:
                call = self.fn(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = loop.run_in_executor(executor, functools.partial(self.fn, **kwargs))
            if self.timeout is None:
                result = await call
            else:
                try:
                    result = await asyncio.wait_for(call, self.timeout)
                except TimeoutError:
                    return ToolOutcome(
                        f"Error: tool {self.name!r} timed out after {self.timeout:g}s", error=True
                    )
        except Exception as exc:
            return ToolOutcome(
                f"Error: tool {self.name!r} raised {type(exc).__name__}: {exc}", error=True
            )
        return ToolOutcome(observation(result))


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a :class:`Tool`: ``@tool`` or ``@tool(name=..., timeout=5)``."""

    def make(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout=timeout)

    return make(fn) if fn is not None else make


def as_tool(value: Any, *, path: str = "tools") -> Tool:
    """A :class:`Tool` as it is, or a plain function made into one."""
    if isinstance(value, Tool):
        return value
    if callable(value):
        try:
            return Tool(value)
        except DefinitionError as exc:
            raise DefinitionError(exc.message, path=path) from None
    raise DefinitionError(f"a tool is a function or a Tool, got {value!r}", path=path)


def observation(result: Any) -> str:
    """The text a model reads for a tool's return value: text as it is, else JSON."""
    if isinstance(result, str):
        return result
    return pydantic_core.to_json(result, fallback=str).decode()


# -- docstrings -------------------------------------------------------------------------------


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and the parameters' descriptions, from a
    Google, numpy or Sphinx docstring."""
    parsed = docstring_parser.parse(inspect.cleandoc(doc))
    summary = " ".join(filter(None, (parsed.short_description, parsed.long_description)))
    params = {p.arg_name.lstrip("*"): _one_line(p.description or "") for p in parsed.params}
    return _one_line(summary), params


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _arguments_model(
    fn: Callable[..., Any], name: str, docs: Mapping[str, str]
) -> tuple[type[BaseModel], str | None]:
    """A pydantic model of the function's arguments, and the name of its context parameter."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"tool {name!r}: cannot read its signature: {exc}") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        hints = {}
    fields: dict[str, Any] = {}
    context_param: str | None = None
    for param in signature.parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if _is_context(param, annotation):
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DefinitionError(
                f"tool {name!r}: *{param.name} cannot be described to a model; name each parameter"
            )
        if param.name.startswith("_"):
            raise DefinitionError(
                f"tool {name!r}: parameter {param.name!r} starts with '_'; rename it"
            )
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, Field(default, description=docs.get(param.name)))
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        model.model_json_schema()
    except Exception as exc:
        raise DefinitionError(
            f"tool {name!r}: its parameters cannot be described as JSON schema: {exc}"
        ) from None
    return model, context_param


def _is_context(param: inspect.Parameter, annotation: Any) -> bool:
    if annotation is ExecutionContext:
        return True
    if isinstance(annotation, str):
        return annotation.split(".")[-1] in ("ExecutionContext", "ExecutionContext | None")
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return ExecutionContext in typing.get_args(annotation)
    return annotation is inspect.Parameter.empty and param.name in ("ctx", "context")


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's titles and inline ``$defs`` (not every model API follows ``$ref``);
    a recursive type keeps its ``$defs``."""
    defs = schema.pop("$defs", {})
    recursive: set[str] = set()
    out = _inline(schema, defs, (), recursive)
    if recursive:
        out["$defs"] = {k: _inline(v, defs, (k,), set()) for k, v in defs.items() if k in recursive}
    return _untitle(out)


def _inline(node: Any, defs: Mapping[str, Any], seen: tuple[str, ...], recursive: set[str]) -> Any:
    if isinstance(node, list):
        return [_inline(n, defs, seen, recursive) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        key = ref.rsplit("/", 1)[1]
        if key in seen or key not in defs:
            recursive.add(key)
            return dict(node)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        target = _inline(copy.deepcopy(defs[key]), defs, (*seen, key), recursive)
        return {**target, **rest}
    return {k: _inline(v, defs, seen, recursive) for k, v in node.items()}


def _untitle(node: Any) -> Any:
    if isinstance(node, list):
        return [_untitle(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: _untitle(sub) for name, sub in value.items()}
        else:
            out[key] = _untitle(value)
    return out


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
    if error.get("type") == "extra_forbidden":
        return f"{where}: unexpected argument"
    return f"{where}: {error.get('msg')}"
