"""One executor per step kind. An executor runs one step instance and returns the successors
it routes to (``None``: all of them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cadenza.graph.ir import Step, StepKind
from cadenza.runtime.scope import Scope
from cadenza.steps.approval import execute_approval
from cadenza.steps.conditional import execute_conditional
from cadenza.steps.loop import execute_loop
from cadenza.steps.orchestrator import execute_orchestrator, execute_worker
from cadenza.steps.parallel import execute_map, execute_parallel
from cadenza.steps.react import execute_react
from cadenza.steps.rollback import execute_rollback
from cadenza.steps.task import execute_task
from cadenza.steps.wait import execute_wait
from cadenza.steps.webhook import execute_webhook

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution

Executor = Callable[["RunExecution", Step, Scope, str], Awaitable[Any]]

EXECUTORS: dict[StepKind, Executor] = {
    StepKind.TASK: execute_task,
    StepKind.PARALLEL: execute_parallel,
    StepKind.MAP: execute_map,
    StepKind.CONDITIONAL: execute_conditional,
    StepKind.LOOP: execute_loop,
    StepKind.WAIT: execute_wait,
    StepKind.ROLLBACK: execute_rollback,
    StepKind.WEBHOOK: execute_webhook,
    StepKind.HUMAN_APPROVAL: execute_approval,
    StepKind.REACT: execute_react,
    StepKind.ORCHESTRATOR: execute_orchestrator,
    StepKind.WORKER: execute_worker,
}
