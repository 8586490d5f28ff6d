"""The server's tables in a SQLite file (see :mod:`cadenza.server.tables`).

A connection of its own to the store's file, used on the event loop's thread like the store's:
statements are short, and each write is one ``BEGIN IMMEDIATE … COMMIT`` that runs without
yielding, so it never interleaves with the store's group commit in this process; other
processes are kept out by SQLite's write lock (waiting at most ``busy_timeout``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from pydantic_core import from_json, to_json

from cadenza.core.errors import StoreError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL
from cadenza.server.auth.keys import KeyRecord
from cadenza.server.tables import (
    KEY_COLUMNS,
    RESERVATION_COLUMNS,
    STALE_AFTER,
    AuditEntry,
    Reservation,
    RunHead,
    RunQuery,
    VersionCount,
    WebhookClaim,
    key_from_row,
    reservation_from_row,
)
from cadenza.store._rows import RUN_COLUMNS, events_from_rows, run_from_row
from cadenza.store._sqlite_migrate import migrate_sqlite
from cadenza.store.base import RunRecord

_TERMINAL = ", ".join(f"'{s}'" for s in sorted(TERMINAL))


class SQLiteTables:
    dialect = "sqlite"

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        try:
            migrate_sqlite(conn)  # done already when the store opened first: a read
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the server tables are not open")
        return self._conn

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._db()
        except sqlite3.Error as exc:
            raise StoreError(f"{doing} in {self.path!r} failed: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Cursor]:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn.cursor()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{doing} in {self.path!r} failed: {exc}") from exc

    async def schema_version(self) -> int:
        with self._reading("reading the schema version") as db:
            row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0])

    # -- API keys ------------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        with self._writing("storing an API key") as cur:
            cur.execute(
                f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id, record.name, _json(sorted(record.roles)), record.hash,
                    record.created, record.expires, record.revoked, record.last_used,
                ),
            )  # fmt: skip

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self._reading("looking up an API key") as db:
            row = db.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?", (key_hash,)
            ).fetchone()
        return None if row is None else _key(row)

    async def list_keys(self) -> list[KeyRecord]:
        with self._reading("listing API keys") as db:
            rows = db.execute(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created, id")
            return [_key(row) for row in rows.fetchall()]

    async def revoke_keys(self, id_or_name: str, now: float) -> list[KeyRecord]:
        with self._writing("revoking API keys") as cur:
            rows = cur.execute(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (id_or_name,)
            ).fetchall()
            if not rows:
                rows = cur.execute(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ? AND revoked IS NULL",
                    (id_or_name,),
                ).fetchall()
            ids = [row[0] for row in rows]
            cur.executemany(
                "UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE id = ?",
                [(now, key_id) for key_id in ids],
            )
            return [
                _key(row)
                for row in cur.execute(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id IN "
                    f"({', '.join('?' * len(ids))}) ORDER BY created, id",
                    ids,
                ).fetchall()
            ]

    async def touch_key(self, key_id: str, now: float) -> None:
        with self._writing("recording an API key's use") as cur:
            cur.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id))

    # -- idempotency keys ----------------------------------------------------------------------

    async def reserve(
        self, owner: str, key: str, request_hash: str, run_id: RunId, now: float
    ) -> Reservation:
        with self._writing("reserving an idempotency key") as cur:
            cur.execute(
                f"INSERT INTO idempotency_keys ({RESERVATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, 'pending', ?) "
                "ON CONFLICT (owner, key) DO NOTHING",
                (owner, key, request_hash, run_id, now),
            )
            row = cur.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM idempotency_keys WHERE owner = ? AND key = ?",
                (owner, key),
            ).fetchone()
        return reservation_from_row(row)

    async def reservation(self, owner: str, key: str) -> Reservation | None:
        with self._reading("reading an idempotency key") as db:
            row = db.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM idempotency_keys WHERE owner = ? AND key = ?",
                (owner, key),
            ).fetchone()
        return None if row is None else reservation_from_row(row)

    async def settle(self, owner: str, key: str, run_id: RunId) -> None:
        with self._writing("settling an idempotency key") as cur:
            cur.execute(
                "UPDATE idempotency_keys SET state = 'done' "
                "WHERE owner = ? AND key = ? AND run_id = ?",
                (owner, key, run_id),
            )

    async def release(self, owner: str, key: str, run_id: RunId) -> None:
        with self._writing("releasing an idempotency key") as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND run_id = ?",
                (owner, key, run_id),
            )

    async def take_over(
        self, owner: str, key: str, stale: RunId, run_id: RunId, now: float
    ) -> bool:
        with self._writing("taking over an idempotency key") as cur:
            cur.execute(
                "UPDATE idempotency_keys SET run_id = ?, created = ? WHERE owner = ? AND key = ? "
                "AND run_id = ? AND state = 'pending' AND created < ?",
                (run_id, now, owner, key, stale, now - STALE_AFTER),
            )
            return cur.rowcount == 1

    # -- inbound webhooks ----------------------------------------------------------------------

    async def claim_webhook(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> WebhookClaim:
        with self._writing("recording a callback") as cur:
            cur.execute(
                "INSERT INTO inbound_webhooks (run_id, step, webhook_id, received) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (run_id, step, webhook_id, now),
            )
            mine = cur.rowcount == 1
            received, delivered = cur.execute(
                "SELECT received, delivered FROM inbound_webhooks "
                "WHERE run_id = ? AND step = ? AND webhook_id = ?",
                (run_id, step, webhook_id),
            ).fetchone()
        return WebhookClaim(received, delivered, mine)

    async def webhook_delivered(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> None:
        with self._writing("recording a delivered callback") as cur:
            cur.execute(
                "UPDATE inbound_webhooks SET delivered = ? "
                "WHERE run_id = ? AND step = ? AND webhook_id = ?",
                (now, run_id, step, webhook_id),
            )

    async def forget_webhook(self, run_id: RunId, step: str, webhook_id: str) -> None:
        with self._writing("forgetting a callback") as cur:
            cur.execute(
                "DELETE FROM inbound_webhooks WHERE run_id = ? AND step = ? AND webhook_id = ? "
                "AND delivered IS NULL",
                (run_id, step, webhook_id),
            )

    async def take_over_webhook(
        self, run_id: RunId, step: str, webhook_id: str, received: float, now: float
    ) -> bool:
        with self._writing("taking over a callback") as cur:
            cur.execute(
                "UPDATE inbound_webhooks SET received = ? WHERE run_id = ? AND step = ? "
                "AND webhook_id = ? AND received = ? AND delivered IS NULL AND received < ?",
                (now, run_id, step, webhook_id, received, now - STALE_AFTER),
            )
            return cur.rowcount == 1

    # -- the server's audit log ----------------------------------------------------------------

    async def record(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with self._writing("writing the server audit log") as cur:
            cur.executemany(
                "INSERT INTO server_audit (at, kind, identity, method, path, client, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.at, e.kind, e.identity, e.method, e.path, e.client, e.reason) for e in entries],
            )

    async def audit_log(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        with self._reading("reading the server audit log") as db:
            rows = db.execute(
                "SELECT at, kind, reason, identity, method, path, client, id FROM server_audit "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [AuditEntry(*row) for row in rows]

    # -- reading runs --------------------------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        clauses, params = _run_clauses(query)
        if clauses is None:
            return []
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        sql = f"SELECT {RUN_COLUMNS} FROM runs {where}ORDER BY created_at DESC, run_id DESC LIMIT ?"
        with self._reading("listing runs") as db:
            rows = db.execute(sql, [*params, query.limit]).fetchall()
        return [run_from_row(row) for row in rows]

    async def events(self, run_id: RunId, *, after_seq: int, limit: int) -> list[Event]:
        with self._reading(f"reading the events of run {run_id!r}") as db:
            rows = db.execute(
                "SELECT seq, type, path, scope, attempt, data, ts, prev_hash, hash FROM events "
                "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (run_id, after_seq, limit),
            ).fetchall()
        return events_from_rows(run_id, rows)

    async def last_seq(self, run_id: RunId) -> int:
        with self._reading(f"reading the log of run {run_id!r}") as db:
            row = db.execute(
                "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row[0])

    async def versions(self, workflow: str) -> list[VersionCount]:
        with self._reading("counting runs by version") as db:
            rows = db.execute(
                "SELECT version, count(*), min(created_at), max(created_at) FROM runs "
                "WHERE workflow = ? GROUP BY version ORDER BY min(created_at)",
                (workflow,),
            ).fetchall()
        return [VersionCount(*row) for row in rows]

    async def active_heads(
        self, workflows: Collection[str] | None, updated_since: float, limit: int
    ) -> list[RunHead]:
        if workflows is not None and not workflows:
            return []
        only = ""
        params: list[Any] = [updated_since]
        if workflows is not None:
            only = f"AND workflow IN ({', '.join('?' * len(workflows))}) "
            params += sorted(workflows)
        sql = (
            "SELECT run_id, workflow, "
            "(SELECT coalesce(max(seq), 0) FROM events e WHERE e.run_id = r.run_id) FROM runs r "
            f"WHERE (status NOT IN ({_TERMINAL}) OR updated_at >= ?) {only}"
            "ORDER BY updated_at DESC LIMIT ?"
        )
        with self._reading("looking for active runs") as db:
            rows = db.execute(sql, [*params, limit]).fetchall()
        return [RunHead(RunId(r), w, int(s)) for r, w, s in rows]


def _run_clauses(query: RunQuery) -> tuple[list[str] | None, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflows is not None:
        if not query.workflows:
            return None, []
        clauses.append(f"workflow IN ({', '.join('?' * len(query.workflows))})")
        params += sorted(query.workflows)
    if query.workflow is not None:
        clauses.append("workflow = ?")
        params.append(query.workflow)
    if query.statuses is not None:
        if not query.statuses:
            return None, []
        clauses.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        params += sorted(str(s) for s in query.statuses)
    if query.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(query.created_after)
    if query.created_before is not None:
        clauses.append("created_at < ?")
        params.append(query.created_before)
    if query.parent is not None:
        clauses.append("parent_run_id = ?")
        params.append(query.parent)
    if query.after is not None:
        clauses.append("(created_at, run_id) < (?, ?)")
        params += list(query.after)
    return clauses, params


def _json(value: Any) -> str:
    return to_json(value).decode()


def _key(row: Sequence[Any]) -> KeyRecord:
    return key_from_row(row, from_json(row[2]))
