"""The PostgreSQL store's statements, by name. Parameters are psycopg's (``%s`` / ``%(name)s``);
tables are found through the connection's ``search_path`` (the store's schema)."""

from __future__ import annotations

from cadenza.store._rows import RUN_COLUMNS
from cadenza.store.base import CLAIMABLE

TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED')"
CLAIMABLE_STATUSES = [str(s) for s in CLAIMABLE]

SELECT_RUN = RUN_COLUMNS.replace("input", "input::text")
# The same, qualified (for statements that join runs with another relation).
RETURNING_RUN = ", ".join(
    f"runs.{c.strip()}::text" if c.strip() == "input" else f"runs.{c.strip()}"
    for c in RUN_COLUMNS.split(",")
)
INSERT_RUN = (
    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join(['%s'] * 16)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)
INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, type, path, scope, attempt, data, ts, prev_hash, hash) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# The group commit's first statement (and the run log's, for one run): lock the runs (in one
# order, so that batches of different processes cannot deadlock) and read each one's epoch,
# identity and status.
LOCK_RUNS = (
    "SELECT run_id, epoch, workflow, version, status FROM runs WHERE run_id = ANY(%s) "
    "ORDER BY run_id FOR UPDATE"
)
# The second: each run's last event. A separate statement, so that it reads with a snapshot
# taken once the locks are held.
LAST_EVENTS = (
    "SELECT r, e.seq, e.hash, e.ts FROM unnest(%s::text[]) AS r LEFT JOIN LATERAL "
    "(SELECT seq, hash, ts FROM events WHERE run_id = r ORDER BY seq DESC LIMIT 1) e ON true"
)
UPDATE_STATUSES = (
    "UPDATE runs SET status = coalesce(u.status, runs.status), "
    "error = coalesce(u.error, runs.error), updated_at = u.ts, "
    "wake_at = CASE WHEN u.finished THEN NULL ELSE runs.wake_at END "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::bool[]) "
    "AS u(run_id, status, error, ts, finished) WHERE runs.run_id = u.run_id"
)
UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (run_id, seq, state, buffers) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (run_id) DO UPDATE SET "
    "seq = excluded.seq, state = excluded.state, buffers = excluded.buffers"
)
RUN_EXISTS = "SELECT 1 FROM runs WHERE run_id = %s"
GET_RUN = f"SELECT {SELECT_RUN} FROM runs WHERE run_id = %s"
READ_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data::text, ts, prev_hash, hash FROM events "
    "WHERE run_id = %s AND seq > %s ORDER BY seq"
)
LOAD_SNAPSHOT = "SELECT seq, state::text, buffers::text FROM snapshots WHERE run_id = %s"
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
    "name text NOT NULL, applied_at double precision NOT NULL)"
)

# -- leases ----------------------------------------------------------------------------------

# A claim that changes the owner starts a new epoch; a held run is due (so that it is picked up
# again if its owner dies without releasing it).
CLAIM = (
    "UPDATE runs SET owner = %(owner)s, lease_until = %(lease)s, "
    "epoch = CASE WHEN owner IS NOT DISTINCT FROM %(owner)s THEN greatest(epoch, 1) "
    "ELSE epoch + 1 END, "
    f"wake_at = CASE WHEN status IN {TERMINAL} THEN NULL "
    "WHEN wake_at IS NULL OR wake_at > %(now)s THEN %(now)s ELSE wake_at END "
    "WHERE run_id = %(run)s "
    "AND (%(steal)s OR owner IS NULL OR owner = %(owner)s OR coalesce(lease_until, 0) < %(now)s) "
    "RETURNING epoch"
)
# SKIP LOCKED: concurrent claimers pass over each other's rows instead of waiting for them, and
# a row changed by a committed claim is re-checked against the WHERE clause before it is taken.
CLAIM_DUE = (
    "WITH due AS (SELECT run_id FROM runs WHERE wake_at <= %(now)s AND status = ANY(%(statuses)s) "
    "AND (owner IS NULL OR lease_until < %(now)s OR owner = ANY(%(dead)s)) {filters}"
    "ORDER BY wake_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "UPDATE runs SET owner = %(owner)s, lease_until = %(lease)s, epoch = runs.epoch + 1 "
    f"FROM due WHERE runs.run_id = due.run_id RETURNING {RETURNING_RUN}"
)
CLAIM_DUE_QUEUES = "AND queue = ANY(%(queues)s) "
CLAIM_DUE_RUNS = "AND run_id = ANY(%(runs)s) "
CLAIM_DUE_WORKFLOWS = (
    "AND (workflow, version) IN (SELECT * FROM unnest(%(names)s::text[], %(versions)s::text[])) "
)
RENEW = (
    "WITH mine AS (SELECT run_id FROM runs WHERE run_id = ANY(%(runs)s) ORDER BY run_id "
    "FOR UPDATE) UPDATE runs SET lease_until = %(lease)s "
    "FROM mine, unnest(%(runs)s::text[], %(epochs)s::bigint[]) AS l(run_id, epoch) "
    "WHERE runs.run_id = mine.run_id AND l.run_id = runs.run_id AND runs.owner = %(owner)s "
    "AND runs.epoch = l.epoch RETURNING runs.run_id"
)
LOCK_OWNED = "SELECT status FROM runs WHERE run_id = %s AND owner = %s FOR UPDATE"
HAS_PENDING = "SELECT EXISTS (SELECT 1 FROM commands WHERE run_id = %s AND done_at IS NULL)"
RELEASE = "UPDATE runs SET owner = NULL, lease_until = NULL, wake_at = %s WHERE run_id = %s"
OWNERS = "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL"
NOTIFY = "SELECT pg_notify(%s, %s)"

# -- commands --------------------------------------------------------------------------------

MAKE_DUE = (
    f"UPDATE runs SET wake_at = CASE WHEN status IN {TERMINAL} THEN wake_at "
    "WHEN wake_at IS NULL OR wake_at > %(now)s THEN %(now)s ELSE wake_at END "
    "WHERE run_id = %(run)s RETURNING owner"
)
INSERT_COMMAND = (
    "INSERT INTO commands (run_id, kind, data, actor, created_at) VALUES (%s, %s, %s, %s, %s) "
    "RETURNING id"
)
COMMAND_COLUMNS = "id, run_id, kind, data::text, actor, created_at, done_at, outcome"
PENDING_COMMANDS = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE done_at IS NULL"
FINISH_COMMAND = "UPDATE commands SET done_at = %s, outcome = %s WHERE id = %s AND done_at IS NULL"
GET_COMMAND = f"SELECT {COMMAND_COLUMNS} FROM commands WHERE id = %s"

# -- pending approvals (cadenza.store._pg_approvals) -------------------------------------------

APPROVAL_OPEN = (
    "INSERT INTO pending_approvals (run_id, path, approvers, quorum, approved_by, summary, show, "
    "since, deadline) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (run_id, path) DO UPDATE SET approvers = excluded.approvers, "
    "quorum = excluded.quorum, approved_by = excluded.approved_by, summary = excluded.summary, "
    "show = excluded.show, since = excluded.since, deadline = excluded.deadline"
)
APPROVERS_ADD = (
    "INSERT INTO approval_approvers (approver, since, run_id, path) "
    "SELECT unnest(%s::text[]), %s, %s, %s"
)
APPROVERS_DROP = "DELETE FROM approval_approvers WHERE run_id = %s AND path = %s"
# A request closes with its rows of approvers (one statement: nothing to read back first).
_CLOSED = (
    "DELETE FROM approval_approvers a USING done "
    "WHERE a.run_id = done.run_id AND a.path = done.path"
)
# An approval that completes the quorum closes the request; any other is added to it.
APPROVAL_COMPLETE = (
    "WITH done AS (DELETE FROM pending_approvals WHERE run_id = %s AND path = %s "
    f"AND cardinality(approved_by) + 1 >= quorum RETURNING run_id, path) {_CLOSED}"
)
APPROVAL_ADD = (
    "UPDATE pending_approvals SET approved_by = approved_by || %s::text "
    "WHERE run_id = %s AND path = %s"
)
APPROVAL_CLOSE = (
    "WITH done AS (DELETE FROM pending_approvals WHERE run_id = %s AND path = %s "
    f"RETURNING run_id, path) {_CLOSED}"
)
APPROVAL_ESCALATE = (
    "UPDATE pending_approvals SET approvers = %s, deadline = %s WHERE run_id = %s AND path = %s"
)
APPROVERS_ESCALATED = (
    "INSERT INTO approval_approvers (approver, since, run_id, path) "
    "SELECT n, p.since, p.run_id, p.path FROM pending_approvals p, unnest(%s::text[]) AS n "
    "WHERE p.run_id = %s AND p.path = %s"
)
# Runs that finished: none of their requests waits any more.
APPROVALS_FINISH = (
    "WITH done AS (DELETE FROM pending_approvals WHERE run_id = ANY(%s) "
    f"RETURNING run_id, path) {_CLOSED}"
)

# Listing, a page at a time in the order of the index that drives it, each row with whether
# its run waits for a decision (and the run's workflow), looked up by the run's key. The check
# is not a condition of the query: the planner cannot tell how many rows it would keep, and
# would rather read every match and sort it than walk the index and stop at the page's end;
# the caller drops the rows of runs that do not wait and reads on. The key is compared in the
# collation of runs.run_id (the tables of approvals use "C"), or its index could not serve it.
_RUN_OF = 'FROM runs WHERE run_id = (p.run_id COLLATE "default")'
_APPROVAL_COLUMNS = (
    f"p.run_id, (SELECT workflow {_RUN_OF}), p.path, p.approvers, p.quorum, p.approved_by, "
    f"p.summary, p.show::text, p.since, p.deadline, "
    f"(SELECT status {_RUN_OF}) = 'WAITING_APPROVAL'"
)
# Oldest first after a cursor (since, run_id, path): the index on (since, run_id, path).
APPROVALS_PAGE = (
    f"SELECT {_APPROVAL_COLUMNS} FROM pending_approvals p "
    "WHERE (p.since, p.run_id, p.path) > (%(since)s, %(run)s, %(path)s) "
    "ORDER BY p.since, p.run_id, p.path LIMIT %(limit)s"
)
# The same for the requests that name one approver: a range of approval_approvers' key.
APPROVALS_PAGE_FOR = (
    f"SELECT {_APPROVAL_COLUMNS} FROM (SELECT since, run_id, path FROM approval_approvers "
    "WHERE approver = %(name)s AND (since, run_id, path) > (%(since)s, %(run)s, %(path)s) "
    "ORDER BY since, run_id, path LIMIT %(limit)s) a "
    "JOIN pending_approvals p ON p.run_id = a.run_id AND p.path = a.path "
    "ORDER BY a.since, a.run_id, a.path"
)
APPROVALS_UNFINISHED = f"SELECT run_id FROM runs WHERE status NOT IN {TERMINAL}"
# After filling the new tables: statistics for the planner before autovacuum gathers them.
APPROVALS_ANALYZE = "ANALYZE pending_approvals, approval_approvers"
APPROVALS_STORED = (
    "SELECT path, approvers, quorum, approved_by, summary, show::text, since, deadline "
    "FROM pending_approvals WHERE run_id = %s ORDER BY path"
)
APPROVALS_EVENTS = (
    "SELECT seq, type, path, scope, attempt, data::text, ts, prev_hash, hash FROM events "
    "WHERE run_id = %s AND type = ANY(%s) ORDER BY seq"
)
