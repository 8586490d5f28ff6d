"""A durable store in PostgreSQL: for several workers on several machines sharing one database.

Install the extra: ``pip install 'cadenza[postgres]'`` (psycopg 3 with ``psycopg_pool``).

Every write is one transaction on a pooled connection (no group commit): an ``append`` locks
its run's row (``SELECT … FOR UPDATE``), so appends of one run are serialised across processes,
reads the last ``seq`` and audit hash, checks that the new events continue the log, and inserts
them together with the status change and the snapshot, or stores nothing. ``durable=False``
appends are written at once like durable ones (the contract allows holding them, not losing
them), so ``close`` has nothing left to write.

The tables live in ``schema`` (created if missing and put first on each connection's
``search_path``; default: the server's search path, normally ``public``). Migrations
(``cadenza/store/schema/postgres/NNNN_*.sql``) are applied on :meth:`PostgresStore.open` in one
transaction holding a ``pg_advisory_xact_lock`` for that schema, so workers starting together
apply each exactly once.

JSON values (``events.data``, ``runs.input``, snapshots) are ``json`` columns, never ``jsonb``:
``json`` keeps the text written by ``pydantic_core.to_json`` as it is, whereas ``jsonb``
reorders keys and rewrites numbers; the audit hash (:mod:`cadenza.observe.audit`) is taken over
the value decoded from the stored text. Timestamps are epoch seconds (``double precision``).

Leases compare ``lease_until`` with the clock of the process that calls :meth:`claim` (not the
database's), as the contract says: machines sharing a store need synchronised clocks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic_core import from_json

from cadenza.errors import ConflictError, RunNotFound, StoreError
from cadenza.ids import RunId
from cadenza.observe.audit import GENESIS
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.status import WorkflowStatus
from cadenza.store._rows import dumps as _dumps
from cadenza.store._rows import event_rows as _event_rows
from cadenza.store._rows import run_filter
from cadenza.store._rows import run_from_row as _run_from_row
from cadenza.store.base import RunRecord, Snapshot
from cadenza.store.migrate import load_migrations

__all__ = ["DEFAULT_DSN", "ENV_DSN", "PostgresStore", "migrate_postgres"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Environment variables read (in this order) when no ``dsn`` is given.
ENV_DSN = ("CADENZA_PG", "CADENZA_STORE")

# The first key of the migration lock (pg_advisory_xact_lock(int, int)); the second is the
# schema name's hash.
_MIGRATE_LOCK = 0x0CADE2A

_RUN_COLUMNS = (
    "run_id, workflow, version, status, target, input, error, created_at, updated_at, "
    "deadline, owner, lease_until, parent_run_id"
)
_SELECT_RUN = _RUN_COLUMNS.replace("input", "input::text")
_INSERT_RUN = (
    f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Locks the run's row (serialising its appends), then reads its last event's seq and hash.
_LOCK_RUN = "SELECT 1 FROM runs WHERE run_id = %s FOR UPDATE"
_LAST_EVENT = "SELECT seq, hash FROM events WHERE run_id = %s ORDER BY seq DESC LIMIT 1"
_UPDATE_STATUS = (
    "UPDATE runs SET status = coalesce(%s, status), error = coalesce(%s, error), "
    "updated_at = %s WHERE run_id = %s"
)
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (run_id, seq, state, buffers) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (run_id) DO UPDATE SET "
    "seq = excluded.seq, state = excluded.state, buffers = excluded.buffers"
)
_CLAIM = (
    "UPDATE runs SET owner = %(owner)s, lease_until = %(lease)s WHERE run_id = %(run)s "
    "AND (%(steal)s OR owner IS NULL OR owner = %(owner)s OR coalesce(lease_until, 0) < %(now)s)"
)
_RELEASE = "UPDATE runs SET owner = NULL, lease_until = NULL WHERE run_id = %s AND owner = %s"
_RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = %s"
_GET_RUN = f"SELECT {_SELECT_RUN} FROM runs WHERE run_id = %s"
_READ_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data::text, ts, prev_hash, hash FROM events "
    "WHERE run_id = %s AND seq > %s ORDER BY seq"
)
_LOAD_SNAPSHOT = "SELECT seq, state::text, buffers::text FROM snapshots WHERE run_id = %s"
_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
    "name text NOT NULL, applied_at double precision NOT NULL)"
)


def _where(dsn: str) -> str:
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "?"
    host = info.get("host") or info.get("hostaddr") or os.environ.get("PGHOST", "localhost")
    return f"{host}:{info.get('port') or os.environ.get('PGPORT', '5432')}"


def _store_error(exc: BaseException, dsn: str, doing: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, PoolTimeout) or (
        isinstance(exc, psycopg.OperationalError) and (exc.sqlstate or "08").startswith("08")
    ):  # no SQLSTATE or class 08: the connection failed (not a lock timeout, say)
        message = f"cannot reach PostgreSQL at {_where(dsn)}: {exc}"
    elif isinstance(exc, psycopg.errors.UniqueViolation):
        message = f"{doing}: a concurrent writer got there first: {exc}"
        error: StoreError = ConflictError(message)
        error.__cause__ = exc
        return error
    else:
        message = f"{doing}: PostgreSQL refused it: {exc}"
    error = StoreError(message.strip())
    error.__cause__ = exc
    return error


async def migrate_postgres(conn: psycopg.AsyncConnection[Any], schema: str | None) -> int:
    """Bring ``schema`` (``None``: the connection's current schema) up to date; returns the
    schema version. One transaction under an advisory lock keyed on the schema name, so
    concurrent openers apply each migration exactly once."""
    migrations = load_migrations("postgres")
    latest = migrations[-1].version
    async with conn.transaction():
        name = schema
        if name is None:
            name = (await (await conn.execute("SELECT current_schema()")).fetchone() or [""])[0]
            if not name:
                raise StoreError("no current schema: the search_path names no existing schema")
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))", (_MIGRATE_LOCK, name)
        )
        if schema is not None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            await conn.execute(
                sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema))
            )
        await conn.execute(_SCHEMA_VERSION_TABLE)
        row = await (
            await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        ).fetchone()
        current = int(row[0]) if row else 0
        if current > latest:
            raise StoreError(
                f"the database schema is version {current}, newer than this Cadenza knows "
                f"({latest}); upgrade Cadenza to use it"
            )
        for migration in migrations[current:]:
            await conn.execute(migration.sql.encode())  # several statements, no parameters
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
    return latest


class PostgresStore:
    """Runs, event logs and snapshots in PostgreSQL (see the module docstring).

    ``dsn`` defaults to ``$CADENZA_PG``, else ``$CADENZA_STORE`` (when it is a
    ``postgres://``/``postgresql://`` URL), else :data:`DEFAULT_DSN`. ``schema`` holds the
    tables (created if missing). ``min_size``/``max_size`` size the connection pool. Call
    :meth:`open` before use (idempotent) and :meth:`close` at the end."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        if dsn is None:
            dsn = os.environ.get("CADENZA_PG") or ""
            env_store = os.environ.get("CADENZA_STORE", "")
            if not dsn and env_store.startswith(("postgres://", "postgresql://")):
                dsn = env_store
            dsn = dsn or DEFAULT_DSN
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Any] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({_where(self.dsn)!r}, schema={self.schema!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise _store_error(exc, self.dsn, "connecting") from exc
        try:
            async with conn:
                await migrate_postgres(conn, self.schema)
        except psycopg.Error as exc:
            raise _store_error(exc, self.dsn, "migrating the schema") from exc
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs={"autocommit": True},
            configure=self._configure if self.schema is not None else None,
            timeout=self.connect_timeout,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise _store_error(exc, self.dsn, "opening the pool") from exc
        self._pool = pool

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self.schema is not None
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _conn(self, doing: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"{self!r} is not open; await store.open() first")
        try:
            async with pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise _store_error(exc, self.dsn, doing) from exc

    # -- writes --------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        run_id = run.run_id
        rows, _ = _event_rows(run_id, 0, GENESIS, events)
        try:
            input_json = _dumps(run.input)
        except ValueError as exc:
            raise StoreError(f"run {run_id!r}: input cannot be stored as JSON: {exc}") from exc
        row = (
            run_id, run.workflow, run.version, str(run.status), run.target, input_json,
            run.error, run.created_at, run.updated_at, run.deadline, run.owner,
            run.lease_until, run.parent_run_id,
        )  # fmt: skip
        async with self._conn(f"creating run {run_id!r}") as conn, conn.transaction():
            cur = await conn.execute(_INSERT_RUN, row)
            if cur.rowcount != 1:
                raise ConflictError(f"run {run_id!r} already exists")
            if rows:
                await cur.executemany(_INSERT_EVENT, rows)

    async def append(
        self,
        run_id: RunId,
        events: Sequence[Event],
        *,
        status: WorkflowStatus | None = None,
        error: str | None = None,
        snapshot: Snapshot | None = None,
        durable: bool = True,
    ) -> None:
        snapshot_row = None
        if snapshot is not None:
            try:
                state, buffers = _dumps(snapshot.state), _dumps(snapshot.buffers)
            except ValueError as exc:
                raise StoreError(
                    f"run {run_id!r}: snapshot cannot be stored as JSON: {exc}"
                ) from exc
            snapshot_row = (run_id, snapshot.seq, state, buffers)
        async with self._conn(f"appending to run {run_id!r}") as conn, conn.transaction():
            cur = conn.cursor()
            await cur.execute(_LOCK_RUN, (run_id,))
            if await cur.fetchone() is None:
                raise RunNotFound(run_id)
            await cur.execute(_LAST_EVENT, (run_id,))
            last = await cur.fetchone()
            last_seq, head = (last[0], last[1] or GENESIS) if last else (0, GENESIS)
            rows, _ = _event_rows(run_id, last_seq, head, events)
            if len(rows) == 1:
                await cur.execute(_INSERT_EVENT, rows[0])
            elif rows:
                await cur.executemany(_INSERT_EVENT, rows)
            if status is not None or error is not None:
                new_status = str(status) if status is not None else None
                await cur.execute(_UPDATE_STATUS, (new_status, error, time.time(), run_id))
            if snapshot_row is not None:
                await cur.execute(_UPSERT_SNAPSHOT, snapshot_row)

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> bool:
        params = {
            "owner": owner, "lease": lease_until, "run": run_id, "steal": steal, "now": time.time()
        }  # fmt: skip
        async with self._conn(f"claiming run {run_id!r}") as conn:
            cur = await conn.execute(_CLAIM, params)
            if cur.rowcount == 1:
                return True
            if await (await conn.execute(_RUN_EXISTS, (run_id,))).fetchone() is None:
                raise RunNotFound(run_id)
            return False

    async def release(self, run_id: RunId, owner: str) -> None:
        async with self._conn(f"releasing run {run_id!r}") as conn:
            cur = await conn.execute(_RELEASE, (run_id, owner))
            if (
                cur.rowcount == 0
                and await (await conn.execute(_RUN_EXISTS, (run_id,))).fetchone() is None
            ):
                raise RunNotFound(run_id)

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: RunId) -> RunRecord:
        async with self._conn(f"reading run {run_id!r}") as conn:
            row = await (await conn.execute(_GET_RUN, (run_id,))).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _run_from_row(row)

    async def list_runs(
        self,
        *,
        status: Collection[WorkflowStatus] | None = None,
        workflow: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        found = run_filter(status, workflow, limit, mark="%s")
        if found is None:
            return []
        where, params = found
        query = f"SELECT {_SELECT_RUN} FROM runs {where}ORDER BY created_at DESC, pos DESC LIMIT %s"
        async with self._conn("listing runs") as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return [_run_from_row(row) for row in rows]

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        async with self._conn(f"reading the events of run {run_id!r}") as conn:
            rows = await (await conn.execute(_READ_EVENTS, (run_id, after_seq))).fetchall()
            if not rows and await (await conn.execute(_RUN_EXISTS, (run_id,))).fetchone() is None:
                raise RunNotFound(run_id)
        return [
            Event(run_id, seq, EventType(type_), path, scope, attempt, from_json(data), ts, prev, h)
            for seq, type_, path, scope, attempt, data, ts, prev, h in rows
        ]

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        async with self._conn(f"loading the snapshot of run {run_id!r}") as conn:
            row = await (await conn.execute(_LOAD_SNAPSHOT, (run_id,))).fetchone()
            if row is None:
                if await (await conn.execute(_RUN_EXISTS, (run_id,))).fetchone() is None:
                    raise RunNotFound(run_id)
                return None
        seq, state, buffers = row
        return Snapshot(seq=seq, state=from_json(state), buffers=from_json(buffers))
