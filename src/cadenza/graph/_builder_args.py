"""Checking and converting the builder's arguments into IR values (policies, conditions,
enums), and the approval gate that ``require_approval`` inserts; shared by the builder's
modules."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from cadenza.errors import DefinitionError, ExpressionError
from cadenza.graph.expressions import compile_expression
from cadenza.graph.ir import (
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
