"""The SQLite store's raw reads for the audit verifier: rows as the file holds them, nothing
decoded, so that a row someone edited by hand is reported by the verifier instead of failing
the read."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from cadenza.core.ids import RunId
from cadenza.store import _sqlite_approvals
from cadenza.store.base import StoredEvent, StoredLog, StoredRun, StoredSnapshot

# Only text ids: a NULL or BLOB id cannot be asked for again, and what it hides shows as a
# gap (or a missing row) under the id it was taken from.
_RUN_IDS = (
    "SELECT run_id FROM runs WHERE typeof(run_id) = 'text' ORDER BY created_at DESC, rowid DESC"
)
_ORPHAN_IDS = (
    "SELECT run_id FROM events WHERE typeof(run_id) = 'text' "
    "UNION SELECT run_id FROM snapshots WHERE typeof(run_id) = 'text' "
    "UNION SELECT run_id FROM pending_approvals WHERE typeof(run_id) = 'text' "
    "EXCEPT SELECT run_id FROM runs ORDER BY 1"
)
_RUN = "SELECT workflow, version, status, input FROM runs WHERE run_id = ?"
_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data, ts, prev_hash, hash FROM events "
    "WHERE run_id = ? ORDER BY seq"
)
_SNAPSHOT = "SELECT seq, state, buffers FROM snapshots WHERE run_id = ?"


def _text(raw: bytes) -> str | bytes:
    """A TEXT value: ``str``, or its bytes when they are not UTF-8 (written by hand with a
    cast), so the verifier can say so instead of the driver raising."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def stored_run_ids(conn: sqlite3.Connection) -> list[RunId]:
    with _raw_text(conn):
        ids = [row[0] for row in conn.execute(_RUN_IDS)]
        ids += [row[0] for row in conn.execute(_ORPHAN_IDS)]
    return [RunId(i) for i in ids if isinstance(i, str)]


def read_stored(conn: sqlite3.Connection, run_id: RunId) -> StoredLog:
    """The run's row, events, snapshot and pending approvals in one read transaction (WAL:
    a consistent view even while another process appends)."""
    with _raw_text(conn):
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN")
        try:
            run = conn.execute(_RUN, (run_id,)).fetchone()
            events = conn.execute(_EVENTS, (run_id,)).fetchall()
            snapshot = conn.execute(_SNAPSHOT, (run_id,)).fetchone()
            approvals = _sqlite_approvals.stored(conn, run_id)
        finally:
            if began:
                conn.execute("COMMIT")
    return StoredLog(
        run_id,
        StoredRun(*run) if run is not None else None,
        [StoredEvent(*row) for row in events],
        StoredSnapshot(*snapshot) if snapshot is not None else None,
        approvals,
    )


@contextlib.contextmanager
def _raw_text(conn: sqlite3.Connection) -> Iterator[None]:
    """Decode TEXT leniently (see :func:`_text`) while the block runs; the store's other
    reads keep the strict default. The block must not await: nothing else may use the
    connection meanwhile."""
    saved = conn.text_factory
    conn.text_factory = _text
    try:
        yield
    finally:
        conn.text_factory = saved
