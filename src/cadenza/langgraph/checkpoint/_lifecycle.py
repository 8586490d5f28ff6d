"""The lifecycle of a thread's run: which status changes a thread may make, and what makes them.

A native run ends: ``COMPLETED``, ``FAILED`` and ``CANCELLED`` are terminal
(:mod:`cadenza.core.status`). A LangGraph thread is a conversation: when a run of its graph
ends, the next input continues it, and a thread interrupted or failed at a checkpoint can be
resumed from there, or from an earlier one (time travel). So a thread's status is what its
latest root checkpoint says, and it changes for one of four reasons (:class:`Cause`):

============ =========================================================================
cause        status after it
============ =========================================================================
checkpoint   a new root checkpoint: ``RUNNING`` while nodes are due, ``COMPLETED``
             when none are, ``WAITING_APPROVAL`` (an interrupt) or ``FAILED`` (a task's
             error) when special writes for it were stored first
writes       an interrupt or a task's error stored for a stored root checkpoint:
             ``WAITING_APPROVAL`` or ``FAILED``, never running or done
deletion     checkpoints deleted: the status of the latest root checkpoint left, or
             ``CANCELLED`` when none is (the only way into ``CANCELLED``)
copy         the thread made a copy of another: the copy's latest root checkpoint's
============ =========================================================================

From any thread status, a change allowed by its cause may follow; a deleted thread
(``CANCELLED``) comes back only with a new checkpoint or a copy. ``INITIALIZING``, ``PAUSED``
and ``ROLLBACK`` are no thread's: the engine never runs a thread, so nothing pauses or
compensates one. Anything else is refused with :class:`~cadenza.core.errors.IllegalTransition`,
as the engine refuses an illegal change of a native run: never silently applied.

Pure: a table and a check.
"""

from __future__ import annotations

from enum import StrEnum

from cadenza.core.errors import IllegalTransition
from cadenza.core.status import WorkflowStatus

__all__ = ["THREAD_STATUSES", "Cause", "check_thread_transition"]

_S = WorkflowStatus


class Cause(StrEnum):
    """What changed a thread's status (see the module's table)."""

    CHECKPOINT = "checkpoint"
    WRITES = "writes"
    DELETION = "deletion"
    COPY = "copy"

    @property
    def describe(self) -> str:
        return _DESCRIBED[self]


_DESCRIBED = {
    Cause.CHECKPOINT: "a new checkpoint",
    Cause.WRITES: "an interrupt or error written for a checkpoint",
    Cause.DELETION: "deleting checkpoints",
    Cause.COPY: "copying another thread",
}

#: The statuses a thread's run has.
THREAD_STATUSES = frozenset(
    {_S.RUNNING, _S.WAITING_APPROVAL, _S.COMPLETED, _S.FAILED, _S.CANCELLED}
)

_C = Cause
#: What may move a thread into each status.
INTO: dict[WorkflowStatus, frozenset[Cause]] = {
    _S.RUNNING: frozenset({_C.CHECKPOINT, _C.DELETION, _C.COPY}),
    _S.COMPLETED: frozenset({_C.CHECKPOINT, _C.DELETION, _C.COPY}),
    _S.WAITING_APPROVAL: frozenset({_C.CHECKPOINT, _C.WRITES, _C.DELETION, _C.COPY}),
    _S.FAILED: frozenset({_C.CHECKPOINT, _C.WRITES, _C.DELETION, _C.COPY}),
    _S.CANCELLED: frozenset({_C.DELETION}),
}
#: What may move a thread out of each status.
OUT_OF: dict[WorkflowStatus, frozenset[Cause]] = {
    **{status: frozenset(Cause) for status in THREAD_STATUSES},
    _S.CANCELLED: frozenset({_C.CHECKPOINT, _C.DELETION, _C.COPY}),
}


def check_thread_transition(
    thread_id: str, current: WorkflowStatus, new: WorkflowStatus, cause: Cause
) -> None:
    """Raise :class:`IllegalTransition` unless a thread may move ``current → new`` for
    ``cause`` (``current == new``: a change recorded without moving, e.g. a deletion)."""
    for status in (current, new):
        if status not in THREAD_STATUSES:
            raise IllegalTransition(
                f"thread {thread_id!r}: {status} is not a thread's status (a thread is "
                f"{', '.join(sorted(THREAD_STATUSES))}); its run was changed by something "
                "other than a checkpointer"
            )
    if cause not in INTO[new] or cause not in OUT_OF[current]:
        can = [c.describe for c in Cause if c in INTO[new] and c in OUT_OF[current]]
        raise IllegalTransition(
            f"thread {thread_id!r}: {cause.describe} cannot move it from {current} to {new} "
            f"(what can: {', '.join(can) or 'nothing'})"
        )
