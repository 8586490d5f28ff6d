"""The storage contract. The runtime knows persistence only through :class:`Store`; every
implementation passes the suite in ``tests/conformance/``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cadenza.core.errors import ConflictError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store.stored import StoredApproval as StoredApproval
from cadenza.store.stored import StoredEvent as StoredEvent
from cadenza.store.stored import StoredLog as StoredLog
from cadenza.store.stored import StoredRun as StoredRun
from cadenza.store.stored import StoredSnapshot as StoredSnapshot

if TYPE_CHECKING:
    from cadenza.resilience.breaker import BreakerBackend
    from cadenza.resilience.limits import BulkheadRegistry
    from cadenza.store.runlog import RunLog

#: The queue a run is submitted to unless it names one.
DEFAULT_QUEUE = "default"

#: Statuses whose runs a worker may claim when they are due (INITIALIZING: queued, not started).
CLAIMABLE = (
    WorkflowStatus.INITIALIZING,
    WorkflowStatus.RUNNING,
    WorkflowStatus.ROLLBACK,
    WorkflowStatus.WAITING_APPROVAL,
)

#: ``release(..., wake_at=DUE_NOW)``: the run has work to do at once (any time in the past does).
DUE_NOW = 0.0


class LeaseLost(ConflictError):
    """A write was fenced off: the writer's lease epoch is no longer the run's (another worker
    claimed the run after this one's lease expired). The writer must abandon the run: whoever
    holds the lease now continues it from its log."""

    def __init__(self, run_id: str, epoch: int, current: int | None) -> None:
        self.run_id = run_id
        self.epoch = epoch
        self.current = current
        now = "" if current is None else f" (the run is at epoch {current})"
        super().__init__(
            f"run {run_id!r}: lease epoch {epoch} is stale{now}; another worker took the run "
            "over, so this writer's results are not stored; it abandons the run"
        )


@dataclass(slots=True, frozen=True)
class RunRecord:
    """The materialised row of a run: what listing and claiming need without reading the log.

    ``target`` is where the definition can be imported from (``pkg.mod:attr`` or
    ``/path/file.py:attr``), so another process can resume the run; ``version`` pins it to
    the definition hash it started with.

    ``queue`` routes the run to the workers that serve it. ``epoch`` counts the claims that
    changed the run's owner (the fencing token). ``wake_at`` is when the run next has work to
    do without its owner (``None``: never by itself, e.g. finished, paused, or waiting for a
    signal): a run is *due* when ``wake_at <= now``, and any worker may claim a due run whose
    lease has expired."""

    run_id: RunId
    workflow: str
    version: str
    status: WorkflowStatus = WorkflowStatus.INITIALIZING
    target: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    deadline: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    parent_run_id: RunId | None = None
    queue: str = DEFAULT_QUEUE
    epoch: int = 0
    wake_at: float | None = None

    def evolve(self, **changes: Any) -> RunRecord:
        return replace(self, **changes)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """The folded run state as of event ``seq``; loading starts here and replays what follows."""

    seq: int
    state: dict[str, Any]
    buffers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Command:
    """A request to a run recorded for the process that executes it (cancel, signal, pause,
    unpause). ``outcome`` is set once it was applied (or refused), with why."""

    id: int
    run_id: RunId
    kind: str
    data: dict[str, Any]
    actor: str
    created_at: float
    done_at: float | None = None
    outcome: str | None = None


@dataclass(slots=True, frozen=True)
class PendingApproval:
    """An approval request waiting for a decision, as :meth:`Store.pending_approvals` lists
    it: the request (``approvers`` and ``deadline`` as escalated, if it was), the approvals
    given so far, and the run's workflow."""

    run_id: RunId
    workflow: str
    step: str
    approvers: tuple[str, ...]
    quorum: int
    approved_by: tuple[str, ...]
    summary: str | None
    show: Any
    since: float
    deadline: float | None

    @property
    def cursor(self) -> tuple[float, str, str]:
        """Its place in the listing order; ``after=`` this gives the next page."""
        return (self.since, self.run_id, self.step)

    def as_dict(self) -> dict[str, Any]:
        """The listing's JSON shape (what ``cadenza approvals list --json`` prints)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "step": self.step,
            "approvers": list(self.approvers),
            "quorum": self.quorum,
            "approved_by": list(self.approved_by),
            "summary": self.summary,
            "show": self.show,
            "since": self.since,
            "deadline": self.deadline,
        }


@runtime_checkable
class Store(Protocol):
    """Persistence for runs, their event logs and snapshots, leases and commands.

    Rules every implementation keeps:

    - ``append`` is atomic: all of its events, the status change and the snapshot are stored
      together or not at all. Events must continue the log exactly (``seq`` = last + 1, no
      gaps); a taken or skipped ``seq`` raises :class:`ConflictError` and stores nothing.
    - ``append(..., epoch=E)`` is *fenced*: it is stored only if the run's lease epoch is still
      ``E``, checked in the same transaction; otherwise it raises :class:`LeaseLost`.
    - Appends are applied in the order they were called (concurrent runs may share one
      transaction: group commit). An append that is cancelled may or may not be stored: the
      caller re-reads the log.
    - Values are JSON: what ``pydantic_core.to_json`` cannot encode is refused with
      :class:`StoreError`; models come back as dicts.
    - ``append(..., durable=False)`` may hold the events back and write them with the next
      durable append of the same store (they are informational, e.g. ``step_started``).
    - Runs are listed newest first.
    - Leases compare ``lease_until`` with the clock of the process that writes; machines that
      share a store need synchronised clocks. A claim that changes the owner (or takes an
      unowned run) increments the run's ``epoch``; renewing one's own lease does not. A claim
      makes the run due (``wake_at <= now``) while it is held, so that it is picked up again
      if its owner dies; ``release`` sets the next ``wake_at``.
    - An append that moves the run to a terminal status clears ``wake_at``.
    - ``get_run``, ``read_events``, ``load_snapshot``, ``claim``, ``release`` and
      ``send_command`` raise :class:`RunNotFound` for an unknown run.
    - ``stored_run_ids`` and ``read_stored`` decode nothing and raise nothing for what the
      rows hold: they are how ``cadenza audit verify`` sees a database someone may have edited.
    - Pending approvals are a materialised view of the logs
      (:mod:`cadenza.store._approvals`): the events that open, decide, escalate and close
      requests and a run's terminal ``status`` event change it in the transaction that
      stores them, ``create_run`` included (a re-drive or fork copies open requests).
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def run_log(self) -> RunLog:
        """The store's run log (:mod:`cadenza.store.runlog`): how a writer with transactions
        of its own (the LangGraph checkpointers) keeps runs in this store, as the store would."""
        ...

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None: ...

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
        epoch: int | None = None,
    ) -> None: ...

    async def get_run(self, run_id: RunId) -> RunRecord: ...

    async def list_runs(
        self,
        *,
        status: Collection[WorkflowStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]: ...

    async def resolve_run_id(self, prefix: str) -> RunId:
        """The run whose id is ``prefix`` or, failing that, the only one whose id starts with
        it (:func:`cadenza.store.run_ids.pick_run_id`): :class:`RunNotFound` for none,
        ``AmbiguousRunId`` (listing some) for several."""
        ...

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]: ...

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None: ...

    async def pending_approvals(
        self,
        *,
        approvers: Collection[str] | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 100,
    ) -> list[PendingApproval]:
        """Up to ``limit`` approval requests waiting for a decision, of runs that are
        ``WAITING_APPROVAL``, oldest first: by ``since``, then run id and step (code-point
        order), so that ``after`` (the :attr:`~PendingApproval.cursor` of the last one listed)
        gives the next page. ``approvers``: only requests naming one of these (a user's name
        and roles)."""
        ...

    # -- the audit verifier's view ------------------------------------------------------------

    async def stored_run_ids(self) -> list[RunId]:
        """Every run id (text) under which a run row, events or a snapshot is stored: the runs
        newest first, then the ids that have events or a snapshot but no run row, in order.
        Reads no other column, so a damaged row cannot make it fail."""
        ...

    async def read_stored(self, run_id: RunId) -> StoredLog:
        """What is stored under ``run_id``, undecoded (see :class:`StoredLog`), read in one
        transaction so that a run being written meanwhile is seen whole. An unknown id gives
        an empty log (no :class:`RunNotFound`): the verifier decides what is missing."""
        ...

    # -- leases ----------------------------------------------------------------------------

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> int | None:
        """Take (or renew) the run's lease for ``owner``. Succeeds when the run is unowned, owned
        by ``owner``, its lease has expired, or ``steal`` is set (the caller knows the owner is
        dead). Returns the lease epoch ``owner`` now holds (always >= 1), or ``None``."""
        ...

    async def claim_due(
        self,
        owner: str,
        *,
        lease_until: float,
        limit: int,
        workflows: Collection[tuple[str, str]] | None = None,
        queues: Collection[str] | None = None,
        dead_owners: Collection[str] = (),
        run_ids: Collection[RunId] | None = None,
    ) -> list[RunRecord]:
        """Claim up to ``limit`` due runs in a :data:`CLAIMABLE` status whose lease has expired
        (or that are unowned, or owned by one of ``dead_owners``), oldest due first, of the
        given ``(workflow, version)`` pairs, ``queues`` and ``run_ids`` (``None``: any). No run
        is handed to two concurrent claimers. Returns the claimed records, with their new
        epochs. (``run_ids`` is how an engine wakes the runs it suspended itself.)"""
        ...

    async def renew(
        self, owner: str, leases: Mapping[RunId, int], *, lease_until: float
    ) -> set[RunId]:
        """Extend the leases ``owner`` holds at the given epochs; returns the runs it still
        holds (a run missing from the answer was taken over: abandon it)."""
        ...

    async def release(self, run_id: RunId, owner: str, *, wake_at: float | None = DUE_NOW) -> None:
        """Give up ``owner``'s lease (nothing if another owner holds it) and set when the run
        next needs a worker: :data:`DUE_NOW`, a time, or ``None`` (not by itself). A command
        waiting for the run makes it due regardless."""
        ...

    async def owners(self) -> list[str]:
        """The distinct owners of runs that are held now (to find dead local processes)."""
        ...

    # -- commands --------------------------------------------------------------------------

    async def send_command(
        self, run_id: RunId, kind: str, data: Mapping[str, Any], *, actor: str = ""
    ) -> int:
        """Record a command for the run and make the run due; returns the command's id."""
        ...

    async def pending_commands(self, run_ids: Collection[RunId] | None = None) -> list[Command]:
        """Commands not yet applied (of ``run_ids``, or of every run), oldest first."""
        ...

    async def finish_command(self, command_id: int, outcome: str) -> None:
        """Mark a command applied (or refused), with what happened."""
        ...

    async def get_command(self, command_id: int) -> Command | None: ...


@runtime_checkable
class SharesResilience(Protocol):
    """A store through which the workers that share it also share circuit-breaker state and
    bulkhead slots (PostgreSQL). Engines on other stores keep both in their process."""

    def breaker_backend(self) -> BreakerBackend:
        """Where breaker records live for every engine on this store."""
        ...

    def bulkheads(self) -> BulkheadRegistry:
        """Bulkhead slots counted across every engine on this store."""
        ...


@runtime_checkable
class Hints(Protocol):
    """A store that tells its clients when there may be something to do (PostgreSQL's
    LISTEN/NOTIFY): new or released work, and commands for runs. Hints may be lost or
    spurious; clients poll as a safety net."""

    def hints(self) -> AsyncIterator[Hint]:
        """Yield hints until the store closes (the first one, ``Hint("ready")``, once the
        subscription is live: nothing sent after it is missed)."""
        ...


@dataclass(slots=True, frozen=True)
class Hint:
    """``kind``: ``"work"`` (a run became due), ``"command"`` (for ``run_id``), or ``"ready"``."""

    kind: str
    run_id: RunId | None = None
