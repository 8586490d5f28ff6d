"""Checking and converting the builder's arguments into IR values (policies, conditions,
enums), and the approval gate that ``require_approval`` inserts; shared by the builder's
modules."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from cadenza.core.errors import DefinitionError, ExpressionError
from cadenza.graph.expressions import compile_expression
from cadenza.graph.ir import (
    AgentSpec,
    Condition,
    Step,
    StepKind,
    StepPolicy,
)
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy

StepRef = str | Callable[..., Any]


def _policy(
    timeout: float | None,
    retries: int | None,
    delay: float,
    retry: RetryPolicy | None,
    path: str,
    bulkhead: Bulkhead | None = None,
    breaker: str | None = None,
) -> StepPolicy:
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise DefinitionError(
            "timeout must be a positive number of seconds", path=f"{path}.timeout"
        )
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise DefinitionError("retries must be an integer >= 0", path=f"{path}.retries")
    if delay < 0:
        raise DefinitionError("retry_delay must be >= 0", path=f"{path}.retry_delay")
    if retry is not None and retries is not None:
        raise DefinitionError("give retries or retry=RetryPolicy(...), not both", path=path)
    if retry is None and retries is not None:
        retry = RetryPolicy(max_attempts=retries + 1, initial_delay=delay, jitter=0.0)
    if breaker is not None and (not isinstance(breaker, str) or not breaker):
        raise DefinitionError("breaker is the name of a dependency", path=f"{path}.breaker")
    return StepPolicy(timeout=timeout, retry=retry, bulkhead=bulkhead, breaker=breaker)


def _condition(cond: str | Callable[..., Any], path: str) -> Condition:
    if isinstance(cond, str):
        try:
            return compile_expression(cond)
        except ExpressionError as exc:
            raise DefinitionError(str(exc), path=path) from exc
    if callable(cond):
        return cond
    raise DefinitionError(
        f"a condition is an expression string or a function, got {cond!r}", path=path
    )


def _gate(
    name: str,
    steps: dict[str, Step],
    edges: list[tuple[str, str]],
    entry: tuple[str, ...],
    approvers: Sequence[str],
) -> tuple[str, ...]:
    """Put an approval step in front of ``name`` (``require_approval``): every edge into the
    step goes through the gate. Returns the entry steps, with the gate instead of ``name``."""
    path = "config.require_approval"
    if name not in steps:
        close = difflib.get_close_matches(name, list(steps), n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise DefinitionError(
            f"no step named {name!r} to put an approval in front of{hint}", path=path
        )
    if not approvers:
        raise DefinitionError(
            "require_approval needs someone to approve: list users or roles in allowed_users",
            path=path,
        )
    gate = f"approve_{name}"
    if gate in steps:
        raise DefinitionError(f"a step is already named {gate!r}", path=path)
    steps[gate] = Step(
        name=gate,
        kind=StepKind.HUMAN_APPROVAL,
        options={"approvers": list(approvers), "quorum": 1, "summary": f"run {name}?"},
    )
    edges[:] = [(a, gate if b == name else b) for a, b in edges]
    edges.append((gate, name))
    return tuple(gate if e == name else e for e in entry)


class _Match(StrEnum):
    ANY = "any"
    ALL = "all"


def _guard(when: Any, path: str) -> tuple[Condition, ...]:
    if when is None:
        return ()
    items = [when] if isinstance(when, str) or callable(when) else list(when)
    if not items:
        raise DefinitionError("give at least one condition", path=path)
    return tuple(_condition(c, f"{path}[{i}]") for i, c in enumerate(items))


def _positive(value: int | None, path: str) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DefinitionError("must be a positive integer", path=path)
    return value


def _enum(enum: Any, value: Any, path: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise DefinitionError(f"{value!r} is not one of: {choices}", path=path) from None


def _declared_writes(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Keys a handler promises to write, read from a ``TypedDict`` return annotation."""
    import typing

    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    if ret is not None and typing.is_typeddict(ret):
        return frozenset(typing.get_type_hints(ret))
    return None


def _model(model: Any, path: str) -> Any:
    """A chat model (anything that speaks :class:`~cadenza.agents.model.ChatModel`)."""
    from cadenza.agents.model import ChatModel

    if not isinstance(model, ChatModel) or not callable(getattr(model, "chat", None)):
        raise DefinitionError(
            f"expected a chat model (an object with name, pricing and async chat(...)), got "
            f"{model!r}",
            path=path,
        )
    return model


def _tools(tools: Any, path: str) -> tuple[Any, ...]:
    """Tools, each a :class:`~cadenza.agents.tools.Tool` or a plain function made into one."""
    from cadenza.agents.tools import as_tool

    if tools is None:
        return ()
    if isinstance(tools, str | bytes) or callable(tools) or not isinstance(tools, Sequence):
        raise DefinitionError("tools is a list of functions or Tools", path=path)
    made = tuple(as_tool(t, path=f"{path}[{i}]") for i, t in enumerate(tools))
    seen: set[str] = set()
    for i, t in enumerate(made):
        if t.name in seen:
            raise DefinitionError(
                f"two tools are named {t.name!r}; give one another name (@tool(name=...))",
                path=f"{path}[{i}]",
            )
        seen.add(t.name)
    return made


def _agent(
    model: Any,
    tools: Any,
    *,
    system: str,
    max_steps: int,
    token_budget: int | None,
    temperature: float | None,
    on_max_steps: str,
    path: str,
) -> AgentSpec:
    if not isinstance(system, str):
        raise DefinitionError("system is the system prompt (text)", path=f"{path}.system")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        raise DefinitionError(
            "max_steps must be a positive integer (an agent without a bound could loop forever)",
            path=f"{path}.max_steps",
        )
    _positive(token_budget, f"{path}.token_budget")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise DefinitionError("temperature is a number from 0 to 2", path=f"{path}.temperature")
    if on_max_steps not in ("fail", "finish"):
        raise DefinitionError(
            f"on_max_steps is 'fail' or 'finish', got {on_max_steps!r}", path=f"{path}.on_max_steps"
        )
    return AgentSpec(
        model=_model(model, f"{path}.model"),
        tools=_tools(tools, f"{path}.tools"),
        system=system,
        max_steps=max_steps,
        token_budget=token_budget,
        temperature=temperature,
        on_max_steps=on_max_steps,
    )


def _key(value: Any, path: str, *, optional: bool = True) -> str | None:
    """A state key argument: a non-empty string (or ``None`` where that is allowed)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise DefinitionError("must be a state key (a non-empty string)", path=path)
    return value
