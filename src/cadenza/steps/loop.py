"""LOOP: repeat a body until an exit condition holds, at most ``max_iterations`` times."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadenza.errors import CadenzaError, LoopLimitExceeded, StepFailed
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import Step
from cadenza.runtime.events import EventType
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope
from cadenza.steps._call import context, evaluate

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_loop(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.body is not None and step.until is not None and step.max_iterations is not None
    for iteration in range(1, step.max_iterations + 1):
        ipath = f"{path}#{iteration}"
        recorded = run.progress.done.get(ipath)
        if recorded is not None:
            finished = bool(recorded["exit"])
        else:
            await run.run_graph(step.body, scope, ipath + "/")
            try:
                ctx = context(run, scope, ipath, step.name, 1)
                finished = bool(await evaluate(step.until, scope.state, ctx))
            except CadenzaError as exc:
                raise StepFailed(path, str(exc), error_type=type(exc).__name__) from exc
            except Exception as exc:
                raise StepFailed(path, first_line(exc), error_type=type(exc).__name__) from exc
            await run.commit(
                EventType.LOOP_ITERATION,
                ipath,
                scope=scope,
                data={"iteration": iteration, "exit": finished},
            )
        if finished:
            await run.commit(
                EventType.STEP_COMPLETED, path, scope=scope, data={"iterations": iteration}
            )
            return None
    until = step.until.source if isinstance(step.until, Expression) else "its exit condition"
    raise LoopLimitExceeded(
        path,
        f"reached max_iterations={step.max_iterations} without {until!s} becoming true; "
        "raise max_iterations or fix the exit condition",
        error_type="LoopLimitExceeded",
    )
