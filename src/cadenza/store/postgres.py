"""A durable store in PostgreSQL: for several workers on several machines sharing one database.

Install the extra: ``pip install 'cadenza[postgres]'`` (psycopg 3 with ``psycopg_pool``).

Appends are *group-committed* (:mod:`cadenza.store._pg_writes`): appends of many runs issued
while a transaction is in flight share the next one, and each append's lease epoch, sequence
numbers and audit chain are checked under its run's row lock in that transaction, so a stale or
misnumbered append fails alone. ``durable=False`` appends are written with the next batch (or by
``close``). Claims, releases and commands are single transactions
(:mod:`cadenza.store._pg_leases`); due runs are claimed with ``FOR UPDATE SKIP LOCKED``, and a
store notifies its channel (``LISTEN``/``NOTIFY``) when a run becomes due or a command is sent.
Circuit-breaker state and bulkhead slots are shared through the database as well
(:mod:`cadenza.store._pg_resilience`), so every worker sees the same breakers and limits.

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

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic_core import from_json

from cadenza.core.errors import ConflictError, RunNotFound, StoreError, StoreUnavailable
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.core.status import TERMINAL, WorkflowStatus
from cadenza.observe.audit import GENESIS
from cadenza.store import _pg_approvals, _pg_audit
from cadenza.store import _pg_sql as q
from cadenza.store._approvals import changes
from cadenza.store._pg_leases import PostgresLeases
from cadenza.store._pg_migrate import migrate_postgres
from cadenza.store._pg_resilience import PostgresBreakerBackend, PostgresBulkheads
from cadenza.store._pg_writes import Append, Create, GroupCommit
from cadenza.store._rows import dumps as _dumps
from cadenza.store._rows import event_rows as _event_rows
from cadenza.store._rows import run_filter, run_row
from cadenza.store._rows import run_from_row as _run_from_row
from cadenza.store._sql_runlog import PostgresRunLog
from cadenza.store.base import PendingApproval, RunRecord, Snapshot, StoredLog
from cadenza.store.run_ids import CANDIDATES, check_prefix, pick_run_id
from cadenza.store.runlog import RunLog, adrive

__all__ = ["DEFAULT_DSN", "ENV_DSN", "RUN_LOG", "PostgresStore", "migrate_postgres"]

#: The run log of every Cadenza PostgreSQL database (see :mod:`cadenza.store.runlog`): drive
#: its operations in a transaction of a connection whose ``search_path`` finds the tables.
RUN_LOG: RunLog = PostgresRunLog()

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Environment variables read (in this order) when no ``dsn`` is given.
ENV_DSN = ("CADENZA_PG", "CADENZA_STORE")


def _where(dsn: str) -> str:
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "?"
    host = info.get("host") or info.get("hostaddr") or os.environ.get("PGHOST", "localhost")
    return f"{host}:{info.get('port') or os.environ.get('PGPORT', '5432')}"


def _ignore_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed check only means the server is still away


#: The server is shutting down, crashed or starting up (a restart, a failover): try again.
_SERVER_AWAY = frozenset({"57P01", "57P02", "57P03"})


def _store_error(exc: BaseException, dsn: str, doing: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError) or (
        isinstance(exc, psycopg.OperationalError)
        and ((exc.sqlstate or "08").startswith("08") or exc.sqlstate in _SERVER_AWAY)
    ):  # no SQLSTATE or class 08: the connection failed (not a lock timeout, say)
        unreachable = StoreUnavailable(f"cannot reach PostgreSQL at {_where(dsn)}: {exc}".strip())
        unreachable.__cause__ = exc
        return unreachable
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


class PostgresStore(PostgresLeases):
    """Runs, event logs and snapshots in PostgreSQL (see the module docstring).

    ``dsn`` defaults to ``$CADENZA_PG``, else ``$CADENZA_STORE`` (when it is a
    ``postgres://``/``postgresql://`` URL), else :data:`DEFAULT_DSN`. ``schema`` holds the
    tables (created if missing). ``min_size``/``max_size`` size the connection pool; ``writers``
    is how many group-commit transactions may be in flight at once. Call :meth:`open` before
    use (idempotent) and :meth:`close` at the end (it writes held events first)."""

    run_log: RunLog = RUN_LOG

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        writers: int = 2,
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
        self.writers = writers
        self.channel = _channel(schema or "")
        self._pool: AsyncConnectionPool[Any] | None = None
        self._writer = GroupCommit(self._conn, lambda: self.channel, lanes=writers)
        self._checking: asyncio.Task[None] | None = None  # a check of the pool's connections
        self._closing = asyncio.Event()
        self._breakers: PostgresBreakerBackend | None = None
        self._bulkheads: PostgresBulkheads | None = None

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
                if self.schema is None:  # the server's search path decides: name its channel
                    row = await (await conn.execute("SELECT current_schema()")).fetchone()
                    self.channel = _channel(str(row[0]) if row else "")
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
        self._closing = asyncio.Event()

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self.schema is not None
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def close(self) -> None:
        if self._pool is None:
            return
        self._closing.set()
        try:
            await self._writer.flush()
        finally:
            pool, self._pool = self._pool, None
            await pool.close()
            if self._breakers is not None:
                self._breakers.close()
            if self._bulkheads is not None:
                await self._bulkheads.close()

    def breaker_backend(self) -> PostgresBreakerBackend:
        """Circuit-breaker state shared by every engine on this database (see
        :mod:`cadenza.store._pg_resilience`)."""
        if self._breakers is None:
            self._breakers = PostgresBreakerBackend(self.dsn, self.schema, self.connect_timeout)
        return self._breakers

    def bulkheads(self) -> PostgresBulkheads:
        """Bulkhead slots counted across every engine on this database."""
        if self._bulkheads is None:
            self._bulkheads = PostgresBulkheads(self.dsn, self.schema)
        return self._bulkheads

    async def flush(self) -> None:
        """Write every queued append now, held ``durable=False`` events included."""
        await self._writer.flush()

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
            error = _store_error(exc, self.dsn, doing)
            if isinstance(error, StoreUnavailable):
                self._check_pool(pool)
            raise error from exc

    def _check_pool(self, pool: AsyncConnectionPool[Any]) -> None:
        """After a connection failed: drop the pool's idle connections that are broken too
        (after a server restart, all are), so that the next tries get fresh ones rather than
        failing once on each. One check at a time."""
        if self._checking is not None and not self._checking.done():
            return
        self._checking = asyncio.get_running_loop().create_task(pool.check())
        self._checking.add_done_callback(_ignore_failure)

    # -- writes --------------------------------------------------------------------------------

    async def create_run(self, run: RunRecord, events: Sequence[Event]) -> None:
        if self._pool is None:
            raise StoreError(f"{self!r} is not open; await store.open() first")
        run_id = run.run_id
        rows, _ = _event_rows(run_id, 0, GENESIS, events)
        try:
            input_json = _dumps(run.input)
        except ValueError as exc:
            raise StoreError(f"run {run_id!r}: input cannot be stored as JSON: {exc}") from exc
        queued = run.owner is None and run.wake_at is not None  # wake a worker
        create = Create(run_id, run_row(run, input_json), rows, queued, changes(events))
        future = self._writer.submit(create, durable=True)
        assert future is not None
        await future

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
    ) -> None:
        if self._pool is None:
            raise StoreError(f"{self!r} is not open; await store.open() first")
        snapshot_row = None
        if snapshot is not None:
            try:
                state, buffers = _dumps(snapshot.state), _dumps(snapshot.buffers)
            except ValueError as exc:
                raise StoreError(
                    f"run {run_id!r}: snapshot cannot be stored as JSON: {exc}"
                ) from exc
            snapshot_row = (run_id, snapshot.seq, state, buffers)
        write = Append(
            run_id,
            list(events),
            str(status) if status is not None else None,
            error,
            status in TERMINAL,
            snapshot_row,
            epoch,
            changes(events),
        )
        future = self._writer.submit(write, durable=durable)
        if future is not None:
            await future

    # -- reads ---------------------------------------------------------------------------------

    async def get_run(self, run_id: RunId) -> RunRecord:
        async with self._conn(f"reading run {run_id!r}") as conn:
            row = await (await conn.execute(q.GET_RUN, (run_id,))).fetchone()
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
        query = (
            f"SELECT {q.SELECT_RUN} FROM runs {where}ORDER BY created_at DESC, pos DESC LIMIT %s"
        )
        async with self._conn("listing runs") as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return [_run_from_row(row) for row in rows]

    async def resolve_run_id(self, prefix: str) -> RunId:
        check_prefix(prefix)
        # starts_with, not a range: the column's collation need not order text by code point.
        query = (
            "SELECT run_id FROM runs WHERE starts_with(run_id, %s) "
            'ORDER BY run_id COLLATE "C" LIMIT %s'
        )
        async with self._conn("looking up a run id") as conn:
            rows = await (await conn.execute(query, (prefix, CANDIDATES))).fetchall()
        return pick_run_id(prefix, [row[0] for row in rows])

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        async with self._conn(f"reading the events of run {run_id!r}") as conn:
            return await adrive(conn.cursor(), RUN_LOG.read(run_id, after_seq=after_seq))

    async def load_snapshot(self, run_id: RunId) -> Snapshot | None:
        async with self._conn(f"loading the snapshot of run {run_id!r}") as conn:
            row = await (await conn.execute(q.LOAD_SNAPSHOT, (run_id,))).fetchone()
            if row is None:
                if await (await conn.execute(q.RUN_EXISTS, (run_id,))).fetchone() is None:
                    raise RunNotFound(run_id)
                return None
        seq, state, buffers = row
        return Snapshot(seq=seq, state=from_json(state), buffers=from_json(buffers))

    async def pending_approvals(
        self,
        *,
        approvers: Collection[str] | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 100,
    ) -> list[PendingApproval]:
        async with self._conn("listing pending approvals") as conn:
            return await _pg_approvals.pending(conn, approvers, after, limit)

    async def stored_run_ids(self) -> list[RunId]:
        async with self._conn("listing the stored run ids") as conn:
            return await _pg_audit.stored_run_ids(conn)

    async def read_stored(self, run_id: RunId) -> StoredLog:
        async with self._conn(f"reading the stored rows of run {run_id!r}") as conn:
            return await _pg_audit.read_stored(conn, run_id)


def _channel(schema: str) -> str:
    """The NOTIFY channel of the tables in ``schema`` (at most 63 bytes, an identifier)."""
    name = f"cadenza_{schema}" if schema else "cadenza"
    if len(name.encode()) > 63:
        name = "cadenza_" + hashlib.sha256(schema.encode()).hexdigest()[:40]
    return name
