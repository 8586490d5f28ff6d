"""CONDITIONAL: choose the successors to run, by expressions, predicates or a router."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from cadenza.core.errors import CadenzaError, StepFailed
from cadenza.core.events import EventType
from cadenza.graph.ir import RouteMode, Step
from cadenza.runtime.calls import context, evaluate
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_conditional(
    run: RunExecution, step: Step, scope: Scope, path: str
) -> tuple[str, ...]:
    ctx = context(run, scope, path, step.name, 1)
    try:
        if step.router is not None:
            chosen = await _call_router(step, scope.state, ctx)
        else:
            chosen = []
            for route in step.routes:
                if route.condition is None or await evaluate(route.condition, scope.state, ctx):
                    chosen.append(route.target)
                    if step.mode is RouteMode.FIRST:
                        break
    except CadenzaError as exc:
        raise StepFailed(path, str(exc), error_type=type(exc).__name__) from exc
    except Exception as exc:
        raise StepFailed(path, first_line(exc), error_type=type(exc).__name__) from exc
    if not chosen and step.default is not None:
        chosen = [step.default]
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data={"route": chosen})
    return tuple(chosen)


async def _call_router(step: Step, state: dict[str, Any], ctx: Any) -> list[str]:
    assert step.router is not None
    fn = step.router.fn
    result = fn(dict(state), ctx) if step.router.wants_context else fn(dict(state))
    if inspect.isawaitable(result):
        result = await result
    names = [] if result is None else [result] if isinstance(result, str) else list(result)
    allowed = step.targets()
    for name in names:
        if name not in allowed:
            raise CadenzaError(
                f"router returned {name!r}, which is not one of its routes: {', '.join(allowed)}"
            )
    return names
