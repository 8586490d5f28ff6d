"""The server's tables in PostgreSQL (see :mod:`cadenza.server.tables`): a small connection
pool of its own on the store's database and schema. Each write is one statement or one
transaction; the primary keys make concurrent servers agree."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cadenza.core.errors import StoreError, StoreUnavailable
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
from cadenza.store._pg_sql import SELECT_RUN
from cadenza.store._rows import events_from_rows, run_from_row
from cadenza.store.base import RunRecord

_TERMINAL = [str(s) for s in sorted(TERMINAL)]


class PostgresTables:
    dialect = "postgres"

    def __init__(self, dsn: str, schema: str | None, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Any] | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.dsn,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            configure=self._configure if self.schema is not None else None,
            timeout=self.connect_timeout,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot reach PostgreSQL for the server tables: {exc}") from exc
        self._pool = pool

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self.schema is not None
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, doing: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise StoreError("the server tables are not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"{doing}: no PostgreSQL connection: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{doing}: PostgreSQL is unreachable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{doing}: PostgreSQL refused it: {exc}") from exc

    async def _one(self, doing: str, query: str, params: Sequence[Any] = ()) -> Any:
        async with self._conn(doing) as conn:
            return await (await conn.execute(query, params)).fetchone()

    async def _all(self, doing: str, query: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._conn(doing) as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def _run(self, doing: str, query: str, params: Sequence[Any] = ()) -> int:
        async with self._conn(doing) as conn:
            return (await conn.execute(query, params)).rowcount

    async def schema_version(self) -> int:
        row = await self._one(
            "reading the schema version", "SELECT coalesce(max(version), 0) FROM schema_version"
        )
        return int(row[0])

    # -- API keys ------------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        await self._run(
            "storing an API key",
            f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.id, record.name, sorted(record.roles), record.hash, record.created,
                record.expires, record.revoked, record.last_used,
            ),
        )  # fmt: skip

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self._one(
            "looking up an API key",
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = %s",
            (key_hash,),
        )
        return None if row is None else _key(row)

    async def list_keys(self) -> list[KeyRecord]:
        rows = await self._all(
            "listing API keys", f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created, id"
        )
        return [_key(row) for row in rows]

    async def revoke_keys(self, id_or_name: str, now: float) -> list[KeyRecord]:
        async with self._conn("revoking API keys") as conn, conn.transaction():
            rows = await (
                await conn.execute(
                    "UPDATE api_keys SET revoked = coalesce(revoked, %s) WHERE id = %s "
                    f"RETURNING {KEY_COLUMNS}",
                    (now, id_or_name),
                )
            ).fetchall()
            if not rows:
                rows = await (
                    await conn.execute(
                        "UPDATE api_keys SET revoked = %s WHERE name = %s AND revoked IS NULL "
                        f"RETURNING {KEY_COLUMNS}",
                        (now, id_or_name),
                    )
                ).fetchall()
        return sorted((_key(row) for row in rows), key=lambda k: (k.created, k.id))

    async def touch_key(self, key_id: str, now: float) -> None:
        await self._run(
            "recording an API key's use",
            "UPDATE api_keys SET last_used = %s WHERE id = %s",
            (now, key_id),
        )

    # -- idempotency keys ----------------------------------------------------------------------

    async def reserve(
        self, owner: str, key: str, request_hash: str, run_id: RunId, now: float
    ) -> Reservation:
        async with self._conn("reserving an idempotency key") as conn:
            await conn.execute(
                f"INSERT INTO idempotency_keys ({RESERVATION_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, 'pending', %s) ON CONFLICT (owner, key) DO NOTHING",
                (owner, key, request_hash, run_id, now),
            )
            row = await (
                await conn.execute(
                    f"SELECT {RESERVATION_COLUMNS} FROM idempotency_keys "
                    "WHERE owner = %s AND key = %s",
                    (owner, key),
                )
            ).fetchone()
        if row is None:  # released by its owner between the two statements: ask again
            return await self.reserve(owner, key, request_hash, run_id, now)
        return reservation_from_row(row)

    async def reservation(self, owner: str, key: str) -> Reservation | None:
        row = await self._one(
            "reading an idempotency key",
            f"SELECT {RESERVATION_COLUMNS} FROM idempotency_keys WHERE owner = %s AND key = %s",
            (owner, key),
        )
        return None if row is None else reservation_from_row(row)

    async def settle(self, owner: str, key: str, run_id: RunId) -> None:
        await self._run(
            "settling an idempotency key",
            "UPDATE idempotency_keys SET state = 'done' "
            "WHERE owner = %s AND key = %s AND run_id = %s",
            (owner, key, run_id),
        )

    async def release(self, owner: str, key: str, run_id: RunId) -> None:
        await self._run(
            "releasing an idempotency key",
            "DELETE FROM idempotency_keys WHERE owner = %s AND key = %s AND run_id = %s",
            (owner, key, run_id),
        )

    async def take_over(
        self, owner: str, key: str, stale: RunId, run_id: RunId, now: float
    ) -> bool:
        count = await self._run(
            "taking over an idempotency key",
            "UPDATE idempotency_keys SET run_id = %s, created = %s WHERE owner = %s AND key = %s "
            "AND run_id = %s AND state = 'pending' AND created < %s",
            (run_id, now, owner, key, stale, now - STALE_AFTER),
        )
        return count == 1

    # -- inbound webhooks ----------------------------------------------------------------------

    async def claim_webhook(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> WebhookClaim:
        async with self._conn("recording a callback") as conn:
            inserted = await (
                await conn.execute(
                    "INSERT INTO inbound_webhooks (run_id, step, webhook_id, received) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING received",
                    (run_id, step, webhook_id, now),
                )
            ).fetchone()
            row = await (
                await conn.execute(
                    "SELECT received, delivered FROM inbound_webhooks "
                    "WHERE run_id = %s AND step = %s AND webhook_id = %s",
                    (run_id, step, webhook_id),
                )
            ).fetchone()
        if row is None:  # forgotten by its deliverer between the two statements
            return await self.claim_webhook(run_id, step, webhook_id, now)
        return WebhookClaim(row[0], row[1], inserted is not None)

    async def webhook_delivered(
        self, run_id: RunId, step: str, webhook_id: str, now: float
    ) -> None:
        await self._run(
            "recording a delivered callback",
            "UPDATE inbound_webhooks SET delivered = %s "
            "WHERE run_id = %s AND step = %s AND webhook_id = %s",
            (now, run_id, step, webhook_id),
        )

    async def forget_webhook(self, run_id: RunId, step: str, webhook_id: str) -> None:
        await self._run(
            "forgetting a callback",
            "DELETE FROM inbound_webhooks WHERE run_id = %s AND step = %s AND webhook_id = %s "
            "AND delivered IS NULL",
            (run_id, step, webhook_id),
        )

    async def take_over_webhook(
        self, run_id: RunId, step: str, webhook_id: str, received: float, now: float
    ) -> bool:
        count = await self._run(
            "taking over a callback",
            "UPDATE inbound_webhooks SET received = %s WHERE run_id = %s AND step = %s "
            "AND webhook_id = %s AND received = %s AND delivered IS NULL AND received < %s",
            (now, run_id, step, webhook_id, received, now - STALE_AFTER),
        )
        return count == 1

    # -- the server's audit log ----------------------------------------------------------------

    async def record(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        async with self._conn("writing the server audit log") as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO server_audit (at, kind, identity, method, path, client, reason) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(e.at, e.kind, e.identity, e.method, e.path, e.client, e.reason) for e in entries],
            )

    async def audit_log(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        rows = await self._all(
            "reading the server audit log",
            "SELECT at, kind, reason, identity, method, path, client, id FROM server_audit "
            "WHERE id > %s ORDER BY id LIMIT %s",
            (after, limit),
        )
        return [AuditEntry(*row) for row in rows]

    # -- reading runs --------------------------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        clauses, params = _run_clauses(query)
        if clauses is None:
            return []
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = await self._all(
            "listing runs",
            f"SELECT {SELECT_RUN} FROM runs {where}"
            'ORDER BY created_at DESC, run_id COLLATE "C" DESC LIMIT %s',
            [*params, query.limit],
        )
        return [run_from_row(row) for row in rows]

    async def events(self, run_id: RunId, *, after_seq: int, limit: int) -> list[Event]:
        rows = await self._all(
            f"reading the events of run {run_id!r}",
            "SELECT seq, type, path, scope, attempt, data::text, ts, prev_hash, hash FROM events "
            "WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (run_id, after_seq, limit),
        )
        return events_from_rows(run_id, rows)

    async def last_seq(self, run_id: RunId) -> int:
        row = await self._one(
            f"reading the log of run {run_id!r}",
            "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = %s",
            (run_id,),
        )
        return int(row[0])

    async def versions(self, workflow: str) -> list[VersionCount]:
        rows = await self._all(
            "counting runs by version",
            "SELECT version, count(*), min(created_at), max(created_at) FROM runs "
            "WHERE workflow = %s GROUP BY version ORDER BY min(created_at)",
            (workflow,),
        )
        return [VersionCount(v, int(n), first, last) for v, n, first, last in rows]

    async def active_heads(
        self, workflows: Collection[str] | None, updated_since: float, limit: int
    ) -> list[RunHead]:
        if workflows is not None and not workflows:
            return []
        only = "AND workflow = ANY(%s) " if workflows is not None else ""
        params: list[Any] = [_TERMINAL, updated_since]
        if workflows is not None:
            params.append(sorted(workflows))
        rows = await self._all(
            "looking for active runs",
            "SELECT run_id, workflow, "
            "(SELECT coalesce(max(seq), 0) FROM events e WHERE e.run_id = r.run_id) FROM runs r "
            f"WHERE (NOT status = ANY(%s) OR updated_at >= %s) {only}"
            "ORDER BY updated_at DESC LIMIT %s",
            [*params, limit],
        )
        return [RunHead(RunId(r), w, int(s)) for r, w, s in rows]


def _run_clauses(query: RunQuery) -> tuple[list[str] | None, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflows is not None:
        if not query.workflows:
            return None, []
        clauses.append("workflow = ANY(%s)")
        params.append(sorted(query.workflows))
    if query.workflow is not None:
        clauses.append("workflow = %s")
        params.append(query.workflow)
    if query.statuses is not None:
        if not query.statuses:
            return None, []
        clauses.append("status = ANY(%s)")
        params.append(sorted(str(s) for s in query.statuses))
    if query.created_after is not None:
        clauses.append("created_at >= %s")
        params.append(query.created_after)
    if query.created_before is not None:
        clauses.append("created_at < %s")
        params.append(query.created_before)
    if query.parent is not None:
        clauses.append("parent_run_id = %s")
        params.append(query.parent)
    if query.after is not None:
        clauses.append('(created_at, run_id COLLATE "C") < (%s, %s)')
        params += list(query.after)
    return clauses, params


def _key(row: Sequence[Any]) -> KeyRecord:
    return key_from_row(row, row[2])
