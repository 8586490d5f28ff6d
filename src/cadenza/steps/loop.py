"""LOOP: repeat a body until an exit condition holds, at most ``max_iterations`` times.

Each iteration ends in one append: the completion of the body's last step together with the
iteration's decision (``loop_iteration``: go on, or exit, then with the loop's own
completion). The last step's result is durable before anything that depends on it starts
(the next iteration, or what follows the loop), as everywhere; it only waits for the exit
condition, which reads it, to be stored with it. A crash in between runs that step again
with the same idempotency key. The progress keeps only the loop's latest finished iteration
(see :mod:`cadenza.runtime.progress`), which is where a resumed run goes on from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadenza.core.errors import CadenzaError, LoopLimitExceeded, StepFailed
from cadenza.core.events import EventType
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import Graph, Step
from cadenza.runtime.calls import context, evaluate
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_loop(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.body is not None and step.until is not None and step.max_iterations is not None
    cursor = run.progress.loops.get(path)
    iteration = int(cursor["iteration"]) if cursor else 0
    finished = bool(cursor and cursor["exit"])
    last = last_step(step.body)
    while not finished:
        if iteration >= step.max_iterations:
            until = step.until.source if isinstance(step.until, Expression) else None
            raise LoopLimitExceeded(
                path,
                f"reached max_iterations={step.max_iterations} without "
                f"{until or 'its exit condition'} becoming true; "
                "raise max_iterations or fix the exit condition",
                error_type="LoopLimitExceeded",
            )
        iteration += 1
        ipath = f"{path}#{iteration}"
        await run.run_graph(step.body, scope, ipath + "/", defer=last)
        finished = await _exit_holds(run, step, scope, path, ipath)
        decision = {"iteration": iteration, "exit": finished}
        if finished:  # stored with the loop's completion, just below
            run.note(EventType.LOOP_ITERATION, ipath, scope=scope, data=decision)
        else:
            await run.commit(EventType.LOOP_ITERATION, ipath, scope=scope, data=decision)
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data={"iterations": iteration})


def last_step(body: Graph) -> str | None:
    """The body's only step without successors, if it has exactly one. Every other step of
    the body has finished before it starts (each has a path to it), so its completion is the
    iteration's last and can be stored with the iteration's decision."""
    sinks = [name for name, successors in body.succs.items() if not successors]
    return sinks[0] if len(sinks) == 1 else None


async def _exit_holds(run: RunExecution, step: Step, scope: Scope, path: str, ipath: str) -> bool:
    assert step.until is not None
    try:
        ctx = context(run, scope, ipath, step.name, 1)
        return bool(await evaluate(step.until, scope.state, ctx))
    except CadenzaError as exc:
        raise StepFailed(path, str(exc), error_type=type(exc).__name__) from exc
    except Exception as exc:
        raise StepFailed(path, first_line(exc), error_type=type(exc).__name__) from exc
