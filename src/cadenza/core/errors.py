"""Errors by phase: definition, expression, store, run. Each message says what was wrong and
where, and, when it is not obvious, what to do about it."""

from __future__ import annotations


class CadenzaError(Exception):
    """Base of every error Cadenza raises on purpose."""


class DefinitionError(CadenzaError):
    """A workflow definition is invalid; raised at compile time, never during a run.

    ``path`` locates the offending part (``"steps.route.routes[1]"``)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class ExpressionError(CadenzaError):
    """A condition expression is malformed (compile time) or cannot be evaluated (run time).

    ``position`` is the 1-based column of the problem where it is known."""

    def __init__(self, message: str, *, expression: str = "", position: int | None = None) -> None:
        self.expression = expression
        self.position = position
        self.message = message
        where = f" at column {position}" if position is not None else ""
        shown = f" in {expression!r}" if expression else ""
        super().__init__(f"{message}{where}{shown}")


class StoreError(CadenzaError):
    """The store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """The store could not be reached (a dropped connection, a server restarting): trying
    again later may work. A write that failed this way may have been committed."""


class ConflictError(StoreError):
    """Another writer appended to the run first (its sequence number is taken)."""


class RunNotFound(StoreError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}")


class IllegalTransition(CadenzaError):
    """A status change the lifecycle does not allow (e.g. COMPLETED → RUNNING)."""


class InputError(CadenzaError):
    """Run input does not fit the workflow's state schema."""


class StepFailed(CadenzaError):
    """A step raised, timed out or exhausted its retries; the run fails with this error."""

    def __init__(self, step: str, message: str, *, error_type: str = "") -> None:
        self.step = step
        self.error_type = error_type
        self.message = message
        super().__init__(f"step {step!r} failed: {message}")


class RollbackRequested(StepFailed):
    """A ROLLBACK step was reached: the run compensates its completed steps and fails."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(step, reason, error_type="RollbackRequested")
        self.args = (f"rolled back by step {step!r}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


class Suspended(CadenzaError):
    """A step waits for something from outside the run (a decision, a signal): the run stops
    executing and holds nothing until it arrives. Raised by steps, caught by the engine."""

    def __init__(self, path: str, waiting_for: str, *, approval: bool = False) -> None:
        self.path = path
        self.waiting_for = waiting_for
        self.approval = approval
        super().__init__(f"step {path!r} waits for {waiting_for}")


class LoopLimitExceeded(StepFailed):
    """A loop ran ``max_iterations`` times without its exit condition becoming true."""


class VersionMismatch(CadenzaError):
    """A run is pinned to a definition version that the loaded workflow does not match."""
