"""Circuit breakers and bulkheads shared by every worker of one PostgreSQL database.

Breakers: one row per breaker (``breakers``) holds its whole :class:`BreakerRecord`. The
breaker's logic runs here, in Python, on a copy of the row, and the result is written back
by compare-and-set on the row's ``version``; a lost race re-reads and re-runs the step (steps
touch only the record and the clock, so that is safe). The breaker API is synchronous (it
guards every call), so this uses a blocking connection of its own: one or two short round
trips per guarded call.

Bulkheads: slot ``i`` of bulkhead ``b`` is the session advisory lock
``(hashtext('cadenza:<schema>:bulkhead:b'), i)``, taken on a connection of this process. A
worker that dies drops its connection, and PostgreSQL drops its locks with it: slots cannot
leak. A call waiting for a slot retries with a short backoff (and at once when a slot of this
process is freed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import astuple
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from cadenza.core.errors import StoreError
from cadenza.resilience._breaker_state import BreakerConfig, BreakerRecord, BreakerState
from cadenza.resilience.limits import Bulkhead, BulkheadRegistry

R = TypeVar("R")
log = logging.getLogger("cadenza.store.postgres")

_FIELDS = (
    "state, generation, ring, head, count, failures, open_until, reason, probes_out, probes_ok"
)
_READ = f"SELECT version, size, {_FIELDS} FROM breakers WHERE name = %s"
_CREATE = (
    f"INSERT INTO breakers (name, version, size, {_FIELDS}) "
    "VALUES (%s, 0, %s, 'closed', 0, %s, 0, 0, 0, 0, '', 0, 0) ON CONFLICT (name) DO NOTHING"
)
_WRITE = (
    "UPDATE breakers SET version = version + 1, state = %s, generation = %s, ring = %s, "
    "head = %s, count = %s, failures = %s, open_until = %s, reason = %s, probes_out = %s, "
    "probes_ok = %s WHERE name = %s AND version = %s"
)
# One slot per statement: a volatile function in a WHERE clause with a LIMIT may be evaluated
# for more rows than are returned (a generic plan does), which would take slots unseen.
_TRY_SLOT = "SELECT pg_try_advisory_lock(hashtext(%s), %s)"
_FREE_SLOT = "SELECT pg_advisory_unlock(hashtext(%s), %s)"
_IN_USE = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
    "AND classid::bigint = (hashtext(%s)::bigint & 4294967295) AND granted"
)


def _record(row: tuple[Any, ...]) -> tuple[int, BreakerRecord]:
    version, size, state, generation, ring, *rest = row
    record = BreakerRecord(size, BreakerState(state), generation, bytearray(ring), *rest)
    return version, record


class PostgresBreakerBackend:
    """A :class:`~cadenza.resilience.breaker.BreakerBackend` over the ``breakers`` table."""

    def __init__(self, dsn: str, schema: str | None, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = psycopg.Connection.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
                )
                if self.schema is not None:
                    conn.execute(
                        sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
                    )
            except psycopg.Error as exc:
                raise StoreError(f"circuit breakers: cannot reach PostgreSQL: {exc}") from exc
            self._conn = conn
        return self._conn

    def transact(self, name: str, config: BreakerConfig, step: Callable[..., R], *args: Any) -> R:
        for _ in range(50):
            try:
                version, record = self._read(name, config)
            except psycopg.OperationalError:
                self.close()  # a broken connection: one fresh try
                version, record = self._read(name, config)
            before = astuple(record)
            result = step(record, *args)  # CircuitOpen: nothing changed, nothing to write
            if astuple(record) == before or self._write(name, version, record):
                return result
        raise StoreError(f"circuit breaker {name!r}: too many concurrent updates, gave up")

    def load(self, name: str) -> BreakerRecord | None:
        row = self._execute(_READ, (name,)).fetchone()
        return None if row is None else _record(row)[1]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _read(self, name: str, config: BreakerConfig) -> tuple[int, BreakerRecord]:
        row = self._execute(_READ, (name,)).fetchone()
        if row is None:
            self._execute(_CREATE, (name, config.window, bytes(config.window)))
            row = self._execute(_READ, (name,)).fetchone()
            assert row is not None
        return _record(row)

    def _write(self, name: str, version: int, r: BreakerRecord) -> bool:
        params = (
            str(r.state), r.generation, bytes(r.ring), r.head, r.count, r.failures,
            r.open_until, r.reason, r.probes_out, r.probes_ok, name, version,
        )  # fmt: skip
        return self._execute(_WRITE, params).rowcount == 1

    def _execute(self, query: str, params: tuple[Any, ...]) -> psycopg.Cursor[Any]:
        try:
            return self._connection().execute(query, params)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"circuit breakers: PostgreSQL refused it: {exc}") from exc


class PostgresBulkheads(BulkheadRegistry):
    """Bulkhead slots as session advisory locks: the limit holds across every worker."""

    def __init__(self, dsn: str, schema: str | None, *, max_wait: float = 0.1) -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = schema or ""
        self.max_wait = max_wait
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()
        self._held: dict[str, set[int]] = {}
        self._freed = asyncio.Event()
        self._freeing: set[asyncio.Future[None]] = set()

    def semaphore(self, bulkhead: Bulkhead) -> _Slot:
        self._check(bulkhead)
        return _Slot(self, bulkhead)

    def in_use(self, name: str) -> int:
        """How many calls of this process hold a slot of ``name`` now."""
        return len(self._held.get(name, ()))

    async def in_use_everywhere(self, name: str) -> int:
        """How many slots of ``name`` are held now, by every worker."""
        async with self._lock:
            conn = await self._connection()
            row = await (await conn.execute(_IN_USE, (self._key(name),))).fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        for held in self._held.values():
            held.clear()

    def _key(self, name: str) -> str:
        return f"cadenza:{self.schema}:bulkhead:{name}"

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            for held in self._held.values():  # a lost connection took its locks with it
                held.clear()
            try:
                self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            except psycopg.Error as exc:
                raise StoreError(f"bulkheads: cannot reach PostgreSQL: {exc}") from exc
        return self._conn

    async def acquire(self, bulkhead: Bulkhead) -> int:
        """Take a free slot (waiting for one); returns its number."""
        delay = 0.002
        while True:
            self._freed.clear()
            slot = await self._try(bulkhead)
            if slot is not None:
                return slot
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), delay)
            delay = min(delay * 2, self.max_wait)

    async def _try(self, bulkhead: Bulkhead) -> int | None:
        held = self._held.setdefault(bulkhead.name, set())
        if len(held) >= bulkhead.limit:
            return None
        task = asyncio.ensure_future(self._try_slot(bulkhead, held))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:  # give back a slot taken after the caller left
            task.add_done_callback(lambda t: self._give_back_later(bulkhead, t))
            raise

    async def _try_slot(self, bulkhead: Bulkhead, held: set[int]) -> int | None:
        key = self._key(bulkhead.name)
        start = random.randrange(bulkhead.limit)  # spread the workers over the slots
        async with self._lock:
            conn = await self._connection()
            for i in range(bulkhead.limit):
                slot = (start + i) % bulkhead.limit
                if slot in held:
                    continue
                try:
                    row = await (await conn.execute(_TRY_SLOT, (key, slot))).fetchone()
                except psycopg.Error as exc:
                    raise StoreError(f"bulkhead {bulkhead.name!r}: {exc}") from exc
                if row is not None and row[0]:
                    held.add(slot)
                    return slot
        return None

    def _give_back_later(self, bulkhead: Bulkhead, task: asyncio.Future[int | None]) -> None:
        if not task.cancelled() and task.exception() is None and task.result() is not None:
            slot = task.result()
            assert slot is not None
            freeing = asyncio.ensure_future(self.release(bulkhead, slot))
            self._freeing.add(freeing)
            freeing.add_done_callback(self._freeing.discard)

    async def release(self, bulkhead: Bulkhead, slot: int) -> None:
        held = self._held.get(bulkhead.name, set())
        try:
            async with self._lock:
                if slot in held and self._conn is not None and not self._conn.closed:
                    await self._conn.execute(_FREE_SLOT, (self._key(bulkhead.name), slot))
        except psycopg.Error as exc:
            log.warning("could not free bulkhead %r slot %d: %s", bulkhead.name, slot, exc)
        finally:
            held.discard(slot)
            self._freed.set()


class _Slot:
    """``async with``: one slot of a shared bulkhead for the duration of a call."""

    __slots__ = ("bulkhead", "registry", "slot")

    def __init__(self, registry: PostgresBulkheads, bulkhead: Bulkhead) -> None:
        self.registry = registry
        self.bulkhead = bulkhead
        self.slot: int | None = None

    async def __aenter__(self) -> _Slot:
        self.slot = await self.registry.acquire(self.bulkhead)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            await asyncio.shield(self.registry.release(self.bulkhead, slot))
