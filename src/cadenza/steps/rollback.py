"""ROLLBACK: reaching this step fails the run on purpose, after compensating every completed
step that declared a compensation (newest first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cadenza.core.errors import RollbackRequested
from cadenza.graph.ir import Step
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_rollback(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    raise RollbackRequested(path, str(step.options.get("reason") or "rollback step reached"))
