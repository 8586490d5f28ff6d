"""Pending approvals as a materialised view of the logs: which requests wait for a decision,
computed from events alone, so that every store keeps its table in the transaction that
stores the events, and the table can be rebuilt (or checked) from the logs at any time.

A request opens with ``approval_requested`` (a new request at the same path replaces the
old one), gains approvers with each approving ``approval_decision`` and closes once they
reach its quorum; a rejecting decision closes it at once; ``approval_escalated`` replaces its
approvers and deadline; a ``status`` event to a terminal status closes every request of the
run (cancelled or failed while waiting, or finished some other way). This is the rule
:func:`cadenza.steps.approval.decided` applies to the fold of the log, kept here as changes
so that the SQL stores apply them without reading the log back. A re-drive or fork copies
the events that open requests, so its ``create_run`` opens them in the new run. (The runtime's
fold also forgets the requests inside a loop iteration once it finishes; none is open then,
since an iteration finishes only after its steps have, and an approval step only once
decided, so no change is needed for it.)

Pure functions over plain data: the stores turn :class:`Change` lists into statements."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from pydantic_core import from_json

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL
from cadenza.store.base import PendingApproval, StoredApproval

#: The event types that change pending approvals (a ``status`` event only to a terminal one).
WATCHED = frozenset(
    {
        EventType.APPROVAL_REQUESTED,
        EventType.APPROVAL_DECISION,
        EventType.APPROVAL_ESCALATED,
        EventType.STATUS,
    }
)
_TERMINAL = frozenset(str(s) for s in TERMINAL)


class Request:
    """One open request, as a store's table row holds it (its run and path aside). Mutable:
    the memory store keeps these and changes them in place."""

    __slots__ = ("approved_by", "approvers", "deadline", "quorum", "show", "since", "summary")

    def __init__(
        self,
        approvers: list[str],
        quorum: int,
        summary: str | None,
        show: Any,
        since: float,
        deadline: float | None,
        approved_by: list[str] | None = None,
    ) -> None:
        self.approvers = approvers
        self.quorum = quorum
        self.summary = summary
        self.show = show
        self.since = since
        self.deadline = deadline
        self.approved_by = approved_by if approved_by is not None else []

    def copy(self) -> Request:
        return Request(
            list(self.approvers), self.quorum, self.summary, self.show, self.since,
            self.deadline, list(self.approved_by),
        )  # fmt: skip


# The changes are named tuples rather than dataclasses: the stores import this module on
# every start, and a dataclass costs about ten times as long to define.


class Open(NamedTuple):
    path: str
    request: Request


class Approve(NamedTuple):
    path: str
    actor: str


class Close(NamedTuple):
    """A rejection (or a request that is decided when made: a quorum below one)."""

    path: str


class Escalate(NamedTuple):
    path: str
    approvers: list[str]
    deadline: float | None


class Finish(NamedTuple):
    """The run reached a terminal status: none of its requests waits any more."""


Change = Open | Approve | Close | Escalate | Finish


def approvers_of(data: Mapping[str, Any]) -> list[str]:
    """An event's approvers, as listed."""
    return [str(a) for a in data.get("approvers") or ()]


def distinct(approvers: Sequence[str]) -> list[str]:
    """Each name once, in order: the rows of a request's approvers (a name listed twice is
    one approver)."""
    return list(dict.fromkeys(approvers))


def changes(events: Iterable[Event]) -> list[Change]:
    """What ``events`` (of one run, in order) change in its pending approvals."""
    out: list[Change] = []
    for event in events:
        kind = event.type
        if kind not in WATCHED:
            continue
        data = event.data
        if kind is EventType.STATUS:
            if data.get("to") in _TERMINAL:
                out.append(Finish())
        elif kind is EventType.APPROVAL_DECISION:
            if data.get("approve"):
                out.append(Approve(event.path, str(data.get("actor"))))
            else:
                out.append(Close(event.path))
        elif kind is EventType.APPROVAL_ESCALATED:
            deadline = data.get("deadline")
            out.append(Escalate(event.path, approvers_of(data), deadline))
        else:
            quorum = int(data.get("quorum") or 0)
            if quorum < 1:  # decided with no decision at all
                out.append(Close(event.path))
                continue
            request = Request(
                approvers=approvers_of(data),
                quorum=quorum,
                summary=data.get("summary"),
                show=data.get("show"),
                since=event.ts,
                deadline=data.get("deadline"),
            )
            out.append(Open(event.path, request))
    return out


def apply(table: dict[str, Request], run_changes: Sequence[Change]) -> None:
    """Apply one run's changes to its open requests (by path), in order."""
    for change in run_changes:
        if isinstance(change, Open):
            # copied: a change may be applied to several tables
            table[change.path] = change.request.copy()
        elif isinstance(change, Approve):
            request = table.get(change.path)
            if request is not None:
                request.approved_by.append(change.actor)
                if completes(request.approved_by, request.quorum):
                    del table[change.path]
        elif isinstance(change, Close):
            table.pop(change.path, None)
        elif isinstance(change, Escalate):
            request = table.get(change.path)
            if request is not None:
                request.approvers = list(change.approvers)
                request.deadline = change.deadline
        else:
            table.clear()


def completes(approved_by: Sequence[str], quorum: int) -> bool:
    """Whether these approvals decide the request (every approval counts, as in
    :func:`cadenza.steps.approval.decided`; a second one by the same person is refused
    before it is recorded)."""
    return len(approved_by) >= quorum


def fold(events: Iterable[Event]) -> dict[str, Request]:
    """The open requests of a run whose log is ``events``: what its table rows must be."""
    table: dict[str, Request] = {}
    apply(table, changes(events))
    return table


def merge(pages: Sequence[Sequence[PendingApproval]], limit: int) -> list[PendingApproval]:
    """The first ``limit`` of pages that are each in listing order (one per approver name),
    each request once (it may name several of them)."""
    out: list[PendingApproval] = []
    seen: set[tuple[str, str]] = set()
    for pending in heapq.merge(*pages, key=lambda p: p.cursor):
        if (pending.run_id, pending.step) not in seen:
            seen.add((pending.run_id, pending.step))
            out.append(pending)
            if len(out) == limit:
                break
    return out


def listed(run_id: str, workflow: str, path: str, request: Request) -> PendingApproval:
    """A request as the listing shows it."""
    return PendingApproval(
        run_id=RunId(run_id),
        workflow=workflow,
        step=path,
        approvers=tuple(request.approvers),
        quorum=request.quorum,
        approved_by=tuple(request.approved_by),
        summary=request.summary,
        show=request.show,
        since=request.since,
        deadline=request.deadline,
    )


def stored_difference(rows: Sequence[StoredApproval], events: Sequence[Event]) -> str | None:
    """How a run's rows of pending approvals, as stored, differ from the fold of its
    (verified) log, or ``None``: what lets ``cadenza audit verify`` hold the table to the log
    it is derived from."""
    expected = fold(events)
    seen: set[str] = set()
    for row in rows:
        path = row.path
        if not isinstance(path, str):
            return f"a row of its pending approvals has the path {path!r}"
        seen.add(path)
        request = expected.get(path)
        if request is None:
            return f"its pending approval {path!r} is not open in its log"
        stored = _decoded(row)
        if stored is None:
            return f"its pending approval {path!r} does not decode"
        folded = (
            request.approvers, request.quorum, request.approved_by, request.summary,
            request.show, request.since, request.deadline,
        )  # fmt: skip
        for name, ours, theirs in zip(_FIELDS, stored, folded, strict=True):
            if ours != theirs:
                return f"its pending approval {path!r} has {name} {ours!r}, its log says {theirs!r}"
    missing = sorted(set(expected) - seen)
    if missing:
        return f"its log has the open approval {missing[0]!r}, its pending approvals lack it"
    return None


_FIELDS = ("approvers", "quorum", "approved_by", "summary", "show", "since", "deadline")


def _decoded(row: StoredApproval) -> tuple[Any, ...] | None:
    """A stored row's values as the fold has them (lists and ``show`` may be JSON text)."""
    try:
        approvers, approved_by, show = (
            from_json(v) if isinstance(v, str | bytes) else v
            for v in (row.approvers, row.approved_by, row.show)
        )
    except ValueError:
        return None
    if not isinstance(approvers, list) or not isinstance(approved_by, list):
        return None
    return (approvers, row.quorum, approved_by, row.summary, show, row.since, row.deadline)
