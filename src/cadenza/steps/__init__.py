"""One executor per step kind. An executor runs one step instance and returns the successors
it routes to (``None``: all of them).

:data:`KINDS` is Cadenza's own table of them, which an engine executes unless it is given
another (``Engine(kinds=...)``); importing this package makes it the default."""

from __future__ import annotations

from cadenza.graph.ir import StepKind
from cadenza.runtime.kinds import Executor, StepKinds, provide_default
from cadenza.steps.approval import execute_approval
from cadenza.steps.conditional import execute_conditional
from cadenza.steps.loop import execute_loop
from cadenza.steps.orchestrator import execute_orchestrator, execute_worker
from cadenza.steps.parallel import execute_map, execute_parallel
from cadenza.steps.react import execute_react
from cadenza.steps.rollback import execute_rollback
from cadenza.steps.task import execute_task
from cadenza.steps.wait import execute_wait
from cadenza.steps.webhook import aclose_clients, execute_webhook

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

#: Every step kind of the design, and the webhook step's connection pools to close with the
#: engine.
KINDS = StepKinds(EXECUTORS, closers=(aclose_clients,))

provide_default(KINDS)

__all__ = ["EXECUTORS", "KINDS", "Executor"]
