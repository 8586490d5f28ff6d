"""A server's parts and their lifetime: the engine over the store (and, when it executes runs
here, the inline worker loop), the server tables, the audit log writer, the authenticator,
the wake-up hub, and the workflows it knows.

Two shapes (``workers_inline``):

- *executing* (``N > 0``; the default on SQLite): runs started over the API execute in this
  process, and a worker loop of ``N`` slots claims the runs that are due (queued by others,
  left by a crash, woken by a timer);
- *enqueuing* (``0``; the default on PostgreSQL): starts are submitted to the store and
  ``cadenza worker`` processes execute them. A command that sets a run going again (a
  decision, a signal, unpause, re-drive, fork) is applied by a short-lived engine that hands
  the run back to the workers as soon as it would start executing it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog

from cadenza import Engine
from cadenza.core.errors import CadenzaError
from cadenza.server.access import Access
from cadenza.server.audit_log import AuditWriter
from cadenza.server.authn import Authenticator
from cadenza.server.catalog import Catalog
from cadenza.server.config import ServerConfig
from cadenza.server.hub import EventHub
from cadenza.server.tables import ServerTables, open_tables
from cadenza.store.base import Store
from cadenza.store.migrate import load_migrations
from cadenza.store.url import open_store

__all__ = ["DEFAULT_INLINE", "Server", "report_failure"]

_log = structlog.get_logger("cadenza.server")

#: Worker slots of an executing server unless told otherwise.
DEFAULT_INLINE = 16


class Server:
    """Open it (``async with``) in the event loop that serves requests."""

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None,
        *,
        config: ServerConfig | None = None,
        catalog: Catalog | None = None,
        workers_inline: int | None = None,
        poll_interval: float = 0.5,
        lease_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        oidc_transport: Any = None,
        observers: Sequence[Any] = (),
    ) -> None:
        self.store_spec = store
        self.config = config or ServerConfig()
        self.catalog = catalog or Catalog()
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.hub = EventHub()
        self.access = Access(self.config.directory, dict(self.config.identities))
        self._requested_inline = workers_inline
        self._oidc_transport = oidc_transport
        self._observers = tuple(observers)
        self.workers_inline = 0
        self.engine: Engine
        self.tables: ServerTables
        self.audit: AuditWriter
        self.authenticator: Authenticator
        self._worker: Any = None
        self._worker_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._opened = False

    # -- lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._opened:
            return
        self.engine = self.new_engine(self._store())
        await self.engine.open()
        try:
            self.tables = open_tables(self.engine.store)
            await self.tables.open()
        except BaseException:
            await self.engine.close()
            raise
        self.dialect = self.tables.dialect
        inline = self._requested_inline
        if inline is None:
            inline = DEFAULT_INLINE if self.dialect == "sqlite" else 0
        if inline < 0:
            raise CadenzaError(f"--workers-inline must be 0 or more, not {inline}")
        self.workers_inline = inline
        self.audit = AuditWriter(self.tables)
        self.authenticator = Authenticator(
            self.tables, self.access, self.audit, self._verifiers(), clock=self.clock
        )
        self._stop = asyncio.Event()
        if inline:
            from cadenza.runtime.worker import Worker

            self._worker = Worker(
                self.engine,
                targets={e.target: e.workflow for e in self.catalog.entries() if e.target},
                concurrency=inline,
                poll_interval=max(self.poll_interval, 0.05),
            )
            self._worker_task = asyncio.get_running_loop().create_task(self._worker.run(self._stop))
        self._opened = True
        _log.info(
            "server_ready",
            store=self.dialect,
            workers_inline=inline,
            workflows=self.catalog.names(),
        )

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        self._stop.set()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        try:
            if self._worker_task is not None:
                await asyncio.gather(self._worker_task, return_exceptions=True)
                await self._worker.shutdown(0)
            else:
                await self.engine.close()
        finally:
            await self.audit.flush()
            await self.tables.close()

    def _store(self) -> Store:
        spec = self.store_spec
        if spec is None or isinstance(spec, str | os.PathLike):
            return open_store(spec, create=True)
        return spec

    def new_engine(self, store: Store) -> Engine:
        """An engine over ``store`` that knows this server's workflows and users."""
        extra: dict[str, Any] = {}
        if self.lease_seconds is not None:
            extra["lease_seconds"] = self.lease_seconds
        engine = Engine(
            store,
            observers=(self.hub, *self._observers),
            directory=self.config.directory,
            **extra,
        )
        for entry in self.catalog.entries():
            engine.register(entry.workflow, target=entry.target)
        return engine

    def _verifiers(self) -> list[Any]:
        if not self.config.oidc:
            return []
        from cadenza.server.auth.tokens import OIDCVerifier

        return [
            OIDCVerifier(c, clock=self.clock, transport=self._oidc_transport, sync_transport=None)
            for c in self.config.oidc
        ]

    @property
    def executes(self) -> bool:
        """Whether runs execute in this process (else workers execute them)."""
        return self.workers_inline > 0

    @contextlib.asynccontextmanager
    async def command_engine(self) -> AsyncIterator[Engine]:
        """The engine that applies a command which may set a run going: this server's own
        when it executes runs, else a new one over a second connection to the store, closed
        (handing what it holds back to the workers) when the command is applied."""
        if self.executes:
            yield self.engine
            return
        engine = self.new_engine(_second_store(self.engine.store))
        await engine.open()
        try:
            yield engine
        finally:
            await engine.close()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the server closes."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(_finished(self._background))
        return task

    # -- health ---------------------------------------------------------------------------------

    def expected_schema(self) -> int:
        return load_migrations(self.dialect)[-1].version


def _finished(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: whoever awaits the task reports it (report_failure)

    return done


def report_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback for a background command nobody awaits any more: log its failure."""
    if not task.cancelled() and task.exception() is not None:
        _log.warning("background_command_failed", error=str(task.exception()))


def _second_store(store: Store) -> Store:
    """A new store on the database of ``store`` (its own connection or pool)."""
    from cadenza.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, fast=store.fast, busy_timeout=store.busy_timeout)
    from cadenza.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        return PostgresStore(store.dsn, schema=store.schema, min_size=1, max_size=2, writers=1)
    raise CadenzaError(f"a server that does not execute runs cannot command runs in {store!r}")
