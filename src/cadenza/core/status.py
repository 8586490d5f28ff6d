"""The run status lifecycle and the transitions it allows (a pure table, no I/O)."""

from __future__ import annotations

from enum import StrEnum

from cadenza.core.errors import IllegalTransition


class WorkflowStatus(StrEnum):
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    ROLLBACK = "ROLLBACK"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED})

_S = WorkflowStatus
ALLOWED: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    _S.INITIALIZING: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED}),
    _S.RUNNING: frozenset(
        {_S.PAUSED, _S.WAITING_APPROVAL, _S.ROLLBACK, _S.COMPLETED, _S.FAILED, _S.CANCELLED}
    ),
    _S.PAUSED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.WAITING_APPROVAL: frozenset({_S.RUNNING, _S.FAILED, _S.CANCELLED}),
    _S.ROLLBACK: frozenset({_S.FAILED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def can_transition(current: WorkflowStatus, new: WorkflowStatus) -> bool:
    return new in ALLOWED[current]


def check_transition(current: WorkflowStatus, new: WorkflowStatus) -> None:
    """Raise :class:`IllegalTransition` unless the lifecycle allows ``current → new``."""
    if new not in ALLOWED[current]:
        allowed = ", ".join(sorted(ALLOWED[current])) or "none (terminal)"
        raise IllegalTransition(
            f"cannot move a run from {current} to {new}; allowed from {current}: {allowed}"
        )
