"""Re-drive and time travel: a new run that starts from a copy of another run's log.

The copy keeps every step result up to a cut and drops what would make the new run repeat
the old one's ending: status changes after the start, failed attempts, compensations. The new
run then resumes like any other and runs what the copied log does not show as done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cadenza.core.errors import CadenzaError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId

#: Not copied: the source's failures and compensations (the new run must not repeat its
#: ending), and what was refused on the source (that happened to it, not to the copy).
_DROPPED = frozenset(
    {
        EventType.STEP_FAILED,
        EventType.COMPENSATION_COMPLETED,
        EventType.COMPENSATION_FAILED,
        EventType.APPROVAL_REFUSED,
        EventType.REFUSED,
    }
)


#: At most this many completed steps are named when a cut point is not found (a long loop
#: completes tens of thousands of step instances).
_LISTED = 20
#: What a fork may be cut after: a step instance's completion, or a loop iteration's decision.
_CUT_POINTS = frozenset({EventType.STEP_COMPLETED, EventType.LOOP_ITERATION})


def cut_after_step(events: Sequence[Event], step: str) -> int:
    """The sequence number of ``step``'s recorded completion. A step instance inside a loop
    iteration (``lp#3/charge``) is one; so is an iteration (``lp#3``): the cut is then after
    its decision, and the new run goes on with the next iteration (or after the loop)."""
    for event in events:
        if event.path == step and event.type in _CUT_POINTS:
            return event.seq
    done = [e.path for e in events if e.type is EventType.STEP_COMPLETED]
    listed = ", ".join(done[:_LISTED]) if done else "none"
    if len(done) > _LISTED:
        listed += f", ... ({len(done)} in all)"
    raise CadenzaError(f"step {step!r} has no recorded completion in this run; completed: {listed}")


def check_redrivable(events: Sequence[Event]) -> None:
    compensations = (EventType.COMPENSATION_COMPLETED, EventType.COMPENSATION_FAILED)
    if any(e.type in compensations for e in events):
        raise CadenzaError(
            "this run was rolled back (its compensations ran), so re-driving it would skip steps "
            "whose effects were undone; fork it from a step instead (runs fork RUN --from STEP)"
        )


def copy_log(
    events: Sequence[Event],
    new_run: RunId,
    *,
    upto: int | None = None,
    parent: RunId,
    from_step: str | None,
    patch: Mapping[str, Any] | None = None,
) -> list[Event]:
    """The events of the new run: the source's up to ``upto`` (all if ``None``), renumbered,
    with the run's start marked as a fork and ``patch`` applied after the copied steps."""
    statuses = 0
    copied: list[Event] = []
    for event in events:
        if upto is not None and event.seq > upto:
            break
        if event.type in _DROPPED:
            continue
        if event.type is EventType.STATUS:
            statuses += 1
            if statuses > 1:  # only INITIALIZING -> RUNNING starts the new run
                continue
        data = event.data
        if event.type is EventType.RUN_CREATED:
            data = {**data, "parent_run_id": parent, "from_step": from_step}
        copied.append(
            Event(
                new_run,
                len(copied) + 1,
                event.type,
                event.path,
                event.scope,
                event.attempt,
                data,
                event.ts,
            )
        )
    if patch:
        copied.append(
            Event(new_run, len(copied) + 1, EventType.STATE_PATCHED, data={"update": dict(patch)})
        )
    return copied
