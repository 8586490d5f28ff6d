"""What the decisions recorded on an approval request add up to, and whether someone may
decide it now: plain functions over the request as the fold of the log holds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadenza.core.errors import CadenzaError
from cadenza.identity import Directory


def decided(request: Mapping[str, Any]) -> tuple[bool, str] | None:
    """``(approved, by whom)`` once a rejection or a quorum of approvals is recorded."""
    approvals: list[str] = []
    for d in request["decisions"]:
        if not d["approve"]:
            comment = f" ({d['comment']})" if d.get("comment") else ""
            return False, f"{d['actor']}{comment}"
        approvals.append(d["actor"])
    if len(approvals) >= request["quorum"]:
        return True, ", ".join(approvals)
    return None


def check_decision(
    approvals: Mapping[str, dict[str, Any]], run_id: str, step: str, actor: str, people: Directory
) -> None:
    """Raise why ``actor`` may not decide ``step`` now (the run is held and waiting): the
    step waits for no decision, the actor may not decide it, or has already decided it."""
    request = approvals.get(step)
    if request is None or decided(request) is not None:
        waiting = [p for p, r in approvals.items() if decided(r) is None]
        raise CadenzaError(
            f"step {step!r} of run {run_id} is not waiting for a decision "
            f"(waiting: {', '.join(waiting) or 'none'})"
        )
    people.check(actor, request["approvers"], f"decide {step!r}")
    earlier = next((d for d in request["decisions"] if d["actor"] == actor), None)
    if earlier is not None:
        verdict = "approved" if earlier["approve"] else "rejected"
        raise CadenzaError(
            f"{actor} has already decided on {step!r} ({verdict}); a decision is final"
        )
