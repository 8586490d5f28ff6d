"""What the server keeps in the store's database besides the runs (schema version 6): API
keys, idempotency keys, the ids of inbound webhooks, and its audit log; and the reads of runs
and events that the HTTP API needs and the :class:`~cadenza.store.base.Store` protocol does
not offer (filtered, cursor-paged listing; a page of a log).

Each dialect has one implementation (:mod:`._sqlite_tables`, :mod:`._pg_tables`) with its own
connection to the store's database, so that the store's own code is untouched: the tables are
created by the store's migrations, and runs are only read here, never written (commands go
through the engine). Every uniqueness the API promises (one run per idempotency key, one
delivery per webhook id) is a primary key here, so it holds across processes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cadenza.core.errors import StoreError
from cadenza.core.ids import RunId
from cadenza.server.auth.keys import KeyRecord

if TYPE_CHECKING:
    from cadenza.core.events import Event
    from cadenza.core.status import WorkflowStatus
    from cadenza.store.base import RunRecord, Store

__all__ = [
    "AuditEntry",
    "Reservation",
    "RunHead",
    "RunQuery",
    "ServerTables",
    "VersionCount",
    "WebhookClaim",
    "open_tables",
]

#: A reservation or webhook delivery still pending after this many seconds was abandoned by
#: a process that died: another may take it over.
STALE_AFTER = 60.0

#: The columns both dialects read keys and reservations with, in the order of the helpers below.
KEY_COLUMNS = "id, name, roles, hash, created, expires, revoked, last_used"
RESERVATION_COLUMNS = "owner, key, request_hash, run_id, state, created"


def key_from_row(row: Sequence[Any], roles: Iterable[str]) -> KeyRecord:
    """A key from a row of :data:`KEY_COLUMNS`, its ``roles`` decoded by the dialect."""
    key_id, name, _, key_hash, created, expires, revoked, last_used = row
    return KeyRecord(
        id=key_id,
        name=name,
        roles=frozenset(roles),
        created=created,
        expires=expires,
        hash=key_hash,
        revoked=revoked,
        last_used=last_used,
    )


def reservation_from_row(row: Sequence[Any]) -> Reservation:
    """A reservation from a row of :data:`RESERVATION_COLUMNS`."""
    owner, key, request_hash, run_id, state, created = row
    return Reservation(owner, key, request_hash, RunId(run_id), state, created)


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs to list, newest first (by ``created_at``, then run id, both descending).

    ``workflows``: only runs of these workflows (``None``: any), the caller's visible ones;
    ``after``: the ``(created_at, run_id)`` of the last run of the previous page."""

    workflows: Collection[str] | None = None
    workflow: str | None = None
    statuses: Collection[WorkflowStatus] | None = None
    created_after: float | None = None
    created_before: float | None = None
    parent: str | None = None
    after: tuple[float, str] | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Reservation:
    """An idempotency key's row: the run it stands for and the hash of its request."""

    owner: str
    key: str
    request_hash: str
    run_id: RunId
    state: str  # "pending" until the run is stored, then "done"
    created: float


@dataclass(frozen=True, slots=True)
class WebhookClaim:
    """A callback's row; ``mine`` when this call inserted it (so it delivers it)."""

    received: float
    delivered: float | None
    mine: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A line of the server's audit log: an authentication failure, or a refusal that
    concerns no run (a start, a hidden run, a key)."""

    at: float
    kind: str
    reason: str
    identity: str = ""
    method: str = ""
    path: str = ""
    client: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class RunHead:
    """A run whose log may grow, with its last event's seq: what the all-runs stream polls."""

    run_id: RunId
    workflow: str
    seq: int


@dataclass(frozen=True, slots=True)
class VersionCount:
    version: str
    runs: int
    first: float
    last: float


class ServerTables(Protocol):
    """The server's storage (see the module docstring). Times are epoch seconds."""

    dialect: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int:
        """The version the database's schema is at (``schema_version``); raises
        :class:`StoreError` when the database cannot be reached."""
        ...

    # -- API keys ------------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None: ...

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def revoke_keys(self, id_or_name: str, now: float) -> list[KeyRecord]:
        """Revoke the key with this id, else every valid key with this name; returns them."""
        ...

    async def touch_key(self, key_id: str, now: float) -> None: ...

    # -- idempotency keys ----------------------------------------------------------------------

    async def reserve(
        self, owner: str, key: str, request_hash: str, run_id: RunId, now: float
    ) -> Reservation:
        """Insert the key for ``run_id`` unless it exists; return the row now stored (this
        one, or the earlier one: compare its ``run_id``)."""
        ...

    async def reservation(self, owner: str, key: str) -> Reservation | None: ...

    async def settle(self, owner: str, key: str, run_id: RunId) -> None:
        """Mark the key's run stored."""
        ...

    async def release(self, owner: str, key: str, run_id: RunId) -> None:
        """Forget the key (its run could not be started), if it still names ``run_id``."""
        ...

    async def take_over(
        self, owner: str, key: str, stale: RunId, run_id: RunId, now: float
    ) -> bool:
        """Point an abandoned pending key from ``stale`` to ``run_id``; whether it did."""
        ...

    # -- inbound webhooks ----------------------------------------------------------------------

    async def claim_webhook(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> WebhookClaim: ...

    async def webhook_delivered(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> None: ...

    async def forget_webhook(self, run_id: RunId, step: str, webhook_id: str) -> None: ...

    async def take_over_webhook(
        self, run_id: RunId, step: str, webhook_id: str, received: float, now: float
    ) -> bool: ...

    # -- the server's audit log ----------------------------------------------------------------

    async def record(self, entries: Sequence[AuditEntry]) -> None: ...

    async def audit_log(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]: ...

    # -- reading runs --------------------------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> list[RunRecord]: ...

    async def events(self, run_id: RunId, *, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events of the run after ``after_seq``, in order (no check that the
        run exists: ask the store)."""
        ...

    async def last_seq(self, run_id: RunId) -> int: ...

    async def versions(self, workflow: str) -> list[VersionCount]: ...

    async def active_heads(
        self, workflows: Collection[str] | None, updated_since: float, limit: int
    ) -> list[RunHead]:
        """Runs that have not finished, or whose status changed since ``updated_since``, of
        ``workflows`` (``None``: any), with their last seq: the runs whose logs may grow."""
        ...


def open_tables(store: Store) -> ServerTables:
    """The server tables in the database of ``store`` (not opened yet)."""
    from cadenza.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        if store.path == ":memory:":
            raise StoreError(
                "cadenza serve needs a store other processes can open: a SQLite file or "
                "PostgreSQL, not :memory:"
            )
        from cadenza.server._sqlite_tables import SQLiteTables

        return SQLiteTables(store.path, busy_timeout=store.busy_timeout)
    try:
        from cadenza.store.postgres import PostgresStore
    except ModuleNotFoundError:
        PostgresStore = None  # type: ignore[assignment,misc]
    if PostgresStore is not None and isinstance(store, PostgresStore):
        from cadenza.server._pg_tables import PostgresTables

        return PostgresTables(store.dsn, store.schema, store.connect_timeout)
    raise StoreError(
        f"cadenza serve keeps API keys and its audit log in the store's database: use a "
        f"SQLite file or PostgreSQL, not {type(store).__name__}"
    )
