"""What a store holds, as stored: the rows the audit verifier reads
(:meth:`cadenza.store.base.Store.read_stored`), nothing decoded, so that a row someone edited
by hand is reported instead of failing the read."""

from __future__ import annotations

from dataclasses import dataclass, field

from cadenza.core.ids import RunId


@dataclass(slots=True, frozen=True)
class StoredEvent:
    """An event row exactly as the database returned it, nothing decoded: the audit
    verifier's input (see :meth:`Store.read_stored`).

    Normally ``seq`` and ``attempt`` are ``int``, ``ts`` a ``float``, ``data`` the JSON text
    and the rest ``str``; the fields are typed ``object`` because a damaged row may hold
    anything (``None``, bytes, text where a number belongs), and the verifier must report that
    rather than fail on it."""

    seq: object
    type: object
    path: object
    scope: object
    attempt: object
    data: object
    ts: object
    prev_hash: object
    hash: object


@dataclass(slots=True, frozen=True)
class StoredRun:
    """The columns of a run's row that its log determines, as stored (``input`` as JSON
    text): the verifier checks them against the log."""

    workflow: object
    version: object
    status: object
    input: object


@dataclass(slots=True, frozen=True)
class StoredSnapshot:
    """A run's snapshot row as stored (``state`` and ``buffers`` as JSON text)."""

    seq: object
    state: object
    buffers: object


@dataclass(slots=True, frozen=True)
class StoredApproval:
    """A row of the pending approvals table as stored (lists and ``show`` as the store keeps
    them: JSON text or arrays): the verifier checks them against the fold of the log."""

    path: object
    approvers: object
    quorum: object
    approved_by: object
    summary: object
    show: object
    since: object
    deadline: object


@dataclass(slots=True, frozen=True)
class StoredLog:
    """Everything a store holds under one run id, as stored and read in one consistent view:
    the run's row (``None`` when there is none), its event rows in ``seq`` order, its
    snapshot (``None`` when there is none) and its rows of pending approvals, by path."""

    run_id: RunId
    run: StoredRun | None
    events: list[StoredEvent]
    snapshot: StoredSnapshot | None
    approvals: list[StoredApproval] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing is stored under this id."""
        return self.run is None and not self.events and self.snapshot is None and not self.approvals
