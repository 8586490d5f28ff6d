from __future__ import annotations

import pytest

from cadenza import IllegalTransition, WorkflowStatus
from cadenza.core.status import ALLOWED, can_transition, check_transition

S = WorkflowStatus


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.INITIALIZING, S.RUNNING),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.RUNNING, S.WAITING_APPROVAL),
        (S.WAITING_APPROVAL, S.RUNNING),
        (S.RUNNING, S.ROLLBACK),
        (S.ROLLBACK, S.FAILED),
        (S.RUNNING, S.COMPLETED),
        (S.RUNNING, S.CANCELLED),
    ],
)
def test_lifecycle_allows(current: WorkflowStatus, new: WorkflowStatus) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.COMPLETED, S.RUNNING),
        (S.FAILED, S.RUNNING),
        (S.CANCELLED, S.RUNNING),
        (S.ROLLBACK, S.COMPLETED),
        (S.INITIALIZING, S.COMPLETED),
        (S.PAUSED, S.COMPLETED),
    ],
)
def test_lifecycle_refuses(current: WorkflowStatus, new: WorkflowStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"cannot move a run from {current} to {new}"):
        check_transition(current, new)


def test_terminal_states_allow_nothing() -> None:
    for status in S:
        assert status.terminal == (not ALLOWED[status])
        assert not can_transition(status, status)
