"""The SQLite store's statements for runs, events and snapshots, by name (``?`` parameters).
The store's group commit and its run log (:mod:`cadenza.store._sql_runlog`) both use them:
there is one copy of each."""

from __future__ import annotations

from cadenza.store._rows import RUN_COLUMNS

# A taken id inserts nothing (the row count says so), rather than failing the statement.
INSERT_RUN = (
    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join(['?'] * 16)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)
INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The same, stored only while the run's lease epoch is the writer's (the check costs one
# B-tree lookup inside the statement, not another statement).
INSERT_FENCED = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND epoch = ?)"
)
UPDATE_STATUS = (
    "UPDATE runs SET status = coalesce(?, status), error = coalesce(?, error), updated_at = ? "
    "WHERE run_id = ?"
)
# A finished run needs no worker again.
UPDATE_FINISHED = (
    "UPDATE runs SET status = coalesce(?, status), error = coalesce(?, error), updated_at = ?, "
    "wake_at = NULL WHERE run_id = ?"
)
EPOCH = "SELECT epoch FROM runs WHERE run_id = ?"
UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (run_id, seq, state, buffers) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET "
    "seq = excluded.seq, state = excluded.state, buffers = excluded.buffers"
)
RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = ?"
# Where a run's log ends (no row: no such run): its row's identity and status, and its last
# event; one statement, two primary-key seeks.
HEAD = (
    "SELECT r.workflow, r.version, r.status, e.seq, e.hash, e.ts FROM runs r LEFT JOIN "
    "(SELECT seq, hash, ts FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1) e ON 1 "
    "WHERE r.run_id = ?1"
)
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
READ_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data, ts, prev_hash, hash FROM events "
    "WHERE run_id = ? AND seq > ? ORDER BY seq"
)
LOAD_SNAPSHOT = "SELECT seq, state, buffers FROM snapshots WHERE run_id = ?"
