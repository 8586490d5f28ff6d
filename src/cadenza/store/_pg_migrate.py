"""Applying the PostgreSQL migrations: once each, safely when several workers open a new
database (or schema) at the same time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql

from cadenza.core.errors import StoreError
from cadenza.store import _pg_approvals
from cadenza.store import _pg_sql as q
from cadenza.store.migrate import load_migrations

__all__ = ["migrate_postgres"]

#: Work in Python that a migration needs after its SQL, in its transaction: filling a new
#: table from the logs (the fold is Python). Each runs once, right after its migration.
_AFTER: dict[int, Callable[[psycopg.AsyncConnection[Any]], Awaitable[object]]] = {
    5: _pg_approvals.backfill,
}

# The first key of the migration lock (pg_advisory_xact_lock(int, int)); the second is the
# schema name's hash.
_MIGRATE_LOCK = 0x0CADE2A


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
        await conn.execute(q.SCHEMA_VERSION_TABLE)
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
            after = _AFTER.get(migration.version)
            if after is not None:
                await after(conn)
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
    return latest
