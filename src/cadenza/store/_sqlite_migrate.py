"""Applying the SQLite migrations: once each, safely when several processes open a new
file at the same time."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from cadenza.core.errors import StoreError
from cadenza.store import _sqlite_approvals
from cadenza.store.migrate import load_migrations

#: Work in Python that a migration needs after its SQL, in its transaction: filling a new
#: table from the logs (the fold is Python). Each runs once, right after its migration.
_AFTER: dict[int, Callable[[sqlite3.Connection], object]] = {
    5: _sqlite_approvals.backfill,
}

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode (which lasts: later connections find it so).

    Switching needs the file to itself for a moment, and SQLite answers "database is locked"
    at once, without the connection's busy timeout, when another connection is switching it
    or writing at that moment (two processes opening a new file together). Tried again for
    up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def split_sql_script(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        not part.strip() or part.strip().startswith("--") for part in buffer.splitlines()
    ):
        raise StoreError(f"SQL script ends with an incomplete statement: {buffer.strip()!r}")
    return statements


def migrate_sqlite(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the schema version.

    Pending migrations are applied in one ``BEGIN IMMEDIATE`` transaction that first re-reads the
    version, so two processes opening a new file at once apply each migration exactly once
    (with the Python step some need after their SQL, see ``_AFTER``)."""
    migrations = load_migrations("sqlite")
    latest = migrations[-1].version
    current = _schema_version(conn)
    if current == latest:
        return current  # the common case: no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SCHEMA_VERSION_TABLE)
        current = _schema_version(conn)
        if current > latest:
            raise StoreError(
                f"the database schema is version {current}, newer than this Cadenza knows "
                f"({latest}); upgrade Cadenza to use it"
            )
        for migration in migrations[current:]:
            for statement in split_sql_script(migration.sql):
                conn.execute(statement)
            after = _AFTER.get(migration.version)
            if after is not None:
                after(conn)
            conn.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return latest


def _schema_version(conn: sqlite3.Connection) -> int:
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
