"""The server's audit log writer: entries added while one write is in flight share the next
transaction (as the stores group-commit events), and each caller's awaitable resolves once
its entry is stored, so a refused request is on record before it is answered. A flood of bad
credentials therefore costs one write per batch, not per request; past ``limit`` entries
waiting, new ones are counted instead of kept, and the count is recorded with the next batch."""

from __future__ import annotations

import asyncio
import time

import structlog

from cadenza.core.errors import StoreError
from cadenza.server.tables import AuditEntry, ServerTables

__all__ = ["AuditWriter"]

_log = structlog.get_logger("cadenza.server")


class AuditWriter:
    def __init__(self, tables: ServerTables, *, limit: int = 10_000) -> None:
        self.tables = tables
        self.limit = limit
        self._waiting: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._dropped = 0
        self._writer: asyncio.Task[None] | None = None

    async def add(self, entry: AuditEntry) -> None:
        """Store ``entry`` (with whatever else is waiting); a store that fails is logged, not
        raised: the request is refused either way."""
        if len(self._waiting) >= self.limit:
            self._dropped += 1
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((entry, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_all())
        await asyncio.shield(done)

    async def flush(self) -> None:
        """Wait until everything added so far is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        while self._waiting or self._dropped:
            waiting, self._waiting = self._waiting, []
            batch = [entry for entry, _ in waiting]
            if self._dropped:
                batch.append(
                    AuditEntry(
                        time.time(),
                        "entries_dropped",
                        f"{self._dropped} audit entries were not kept: more than {self.limit} "
                        "waited at once",
                    )
                )
                self._dropped = 0
            try:
                await self.tables.record(batch)
            except StoreError as exc:
                _log.warning("server_audit_not_recorded", entries=len(batch), error=str(exc))
                for entry in batch:
                    _log.warning(
                        "server_audit",
                        kind=entry.kind,
                        reason=entry.reason,
                        identity=entry.identity,
                        path=entry.path,
                    )
            for _, done in waiting:
                if not done.done():
                    done.set_result(None)
