"""The ``postgres`` harness: each test gets its own schema in the server named by
``$CADENZA_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), dropped afterwards.
Skipped when psycopg is not installed or the server cannot be reached."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from cadenza.store.base import Store

DSN = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"

_unreachable: str | None = None  # why the server could not be used (remembered per session)


async def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


class PostgresHarness:
    durable = True

    def __init__(self, tmp_path: Path) -> None:
        self.schema = f"cadenza_test_{uuid.uuid4().hex[:12]}"
        self.store: Store | None = None

    def _new(self) -> Store:
        from cadenza.store.postgres import PostgresStore

        return PostgresStore(DSN, schema=self.schema, max_size=4, connect_timeout=3)

    async def start(self) -> Store:
        global _unreachable
        if _unreachable is not None:
            pytest.skip(_unreachable)
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError:
            _unreachable = "psycopg[pool] is not installed (pip install 'cadenza[postgres]')"
            pytest.skip(_unreachable)
        from cadenza.core.errors import StoreError

        store = self._new()
        try:
            await store.open()
        except StoreError as exc:
            if "cannot reach PostgreSQL" not in str(exc):
                raise
            _unreachable = f"PostgreSQL not available: {exc}"
            pytest.skip(_unreachable)
        self.store = store
        return store

    async def reopen(self) -> Store:
        if self.store is not None:
            await self.store.close()
        self.store = self._new()
        await self.store.open()
        return self.store

    async def stop(self) -> None:
        if self.store is None:
            return
        await self.store.close()
        self.store = None
        await drop_schema(DSN, self.schema)


HARNESSES = {"postgres": PostgresHarness}
