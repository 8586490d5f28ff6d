"""Pure conversions between what the store holds and what the API shows: runs, events and
pages as JSON, cursors, input checked field by field with JSON paths, the state after an
event, and an approval request folded from a run's log."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import PydanticUserError, TypeAdapter, ValidationError

from cadenza.core.events import Event, EventType
from cadenza.core.state import StateSchema
from cadenza.server.problems import Problem
from cadenza.store.base import RunRecord

__all__ = [
    "approval_from_log",
    "check_input",
    "approval_position",
    "encode_cursor",
    "run_position",
    "event_json",
    "path_of",
    "run_json",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def run_json(record: RunRecord, state: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "workflow": record.workflow,
        "version": record.version,
        "status": str(record.status),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "error": record.error,
        "parent_run_id": record.parent_run_id,
        "queue": record.queue,
        "input": record.input,
        "state": state,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "type": str(event.type),
        "path": event.path,
        "scope": event.scope,
        "attempt": event.attempt,
        "data": event.data,
        "ts": event.ts,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


#: Cursors are the sort keys of the last item of a page, written so that every string of
#: this form is a position (a float in hex, then UTF-8 text in hex): a client can only send
#: a position, never something the server cannot read.
_FLOAT = r"-?0x[01]\.[0-9a-f]{0,13}p[+-][0-9]{1,3}"
_TEXT = r"(?:[0-9a-f]{2}){0,400}"
RUN_CURSOR = f"^{_FLOAT}~{_TEXT}$"
APPROVAL_CURSOR = f"^{_FLOAT}~{_TEXT}~{_TEXT}$"


def encode_cursor(at: float, *texts: str) -> str:
    return "~".join([float(at).hex(), *(t.encode().hex() for t in texts)])


def decode_cursor(text: str) -> tuple[float, list[str]]:
    """The position a cursor of the patterns above names (the route checked the pattern)."""
    at, *texts = text.split("~")
    return float.fromhex(at), [bytes.fromhex(t).decode("utf-8", "replace") for t in texts]


def run_position(text: str) -> tuple[float, str]:
    at, (run_id,) = decode_cursor(text)
    return at, run_id


def approval_position(text: str) -> tuple[float, str, str]:
    at, (run_id, step) = decode_cursor(text)
    return at, run_id, step


def path_of(*parts: str | int) -> str:
    """A JSON path: ``$.body.input.amount``, ``$.body.input['odd key'][2]``."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            path += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            path += f"['{escaped}']"
    return path


@functools.lru_cache(maxsize=512)
def _adapter(tp: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(tp)
    except PydanticUserError:
        return None


def check_input(
    schema: StateSchema, data: Mapping[str, Any], at: tuple[str, ...] = ("body", "input")
) -> dict[str, Any]:
    """``data`` validated against ``schema``: every problem at once, each with the JSON path
    of the offending value under ``at`` (422), else the values the engine will store."""
    problems: list[dict[str, str]] = []
    if not schema.open:
        fields = ", ".join(schema.fields) or "nothing"
        for key in data:
            if key not in schema.fields:
                problems.append(
                    {
                        "path": path_of(*at, key),
                        "message": f"not a field of the state {schema.name} (it has: {fields})",
                    }
                )
    for key, value in data.items():
        spec = schema.fields.get(key)
        if spec is None:
            continue
        try:
            adapter = _adapter(spec.type)
        except TypeError:  # an unhashable type: build it each time
            adapter = _adapter.__wrapped__(spec.type)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            for error in exc.errors():
                location = [p for p in error.get("loc", ()) if isinstance(p, str | int)]
                problems.append(
                    {
                        "path": path_of(*at, key, *location),
                        "message": str(error.get("msg", "invalid")),
                    }
                )
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise Problem(422, f"{first['path']}: {first['message']}{more}", errors=problems)
    return schema.validate_input(data)


def approval_from_log(
    events: Sequence[Event], step: str, workflow: str, waiting: bool
) -> dict[str, Any] | None:
    """The latest request of approval step ``step`` in a run's log, with its decisions so
    far (``None`` when the step never asked for one)."""
    request: dict[str, Any] | None = None
    for event in events:
        if event.path != step:
            continue
        kind, data = event.type, event.data
        if kind is EventType.APPROVAL_REQUESTED:
            request = {**data, "since": event.ts, "decisions": []}
        elif request is None:
            continue
        elif kind is EventType.APPROVAL_DECISION:
            request["decisions"].append(
                {
                    "actor": str(data.get("actor", "")),
                    "approve": bool(data.get("approve")),
                    "comment": str(data.get("comment") or ""),
                }
            )
        elif kind is EventType.APPROVAL_ESCALATED:
            request["approvers"] = list(data.get("approvers", request.get("approvers", [])))
            request["deadline"] = data.get("deadline")
    if request is None:
        return None
    decisions = request["decisions"]
    approved_by = [d["actor"] for d in decisions if d["approve"]]
    rejected = any(not d["approve"] for d in decisions)
    quorum = int(request.get("quorum") or 1)
    open_ = waiting and not rejected and len(set(approved_by)) < quorum
    return {
        "run_id": events[0].run_id if events else "",
        "workflow": workflow,
        "step": step,
        "approvers": list(request.get("approvers", [])),
        "quorum": quorum,
        "approved_by": approved_by,
        "summary": request.get("summary"),
        "show": request.get("show"),
        "since": float(request["since"]),
        "deadline": request.get("deadline"),
        "decisions": decisions,
        "waiting": open_,
    }


def state_after(
    events: Sequence[Event], reducers: Mapping[str, Any], upto: int
) -> tuple[dict[str, Any], str]:
    """The run's state and status after event ``upto`` (the log's fold, as the engine folds
    it)."""
    from cadenza.runtime.progress import Progress

    progress = Progress(reducers=reducers)
    for event in events:
        if event.seq > upto:
            break
        progress.apply(event)
    return progress.state, str(progress.status)
