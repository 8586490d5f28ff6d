-- Cadenza SQLite schema, version 3: queues, fenced leases, due times and commands.
--
-- queue: the queue a run was submitted to (workers serve the queues they are told to).
-- epoch: the lease epoch, incremented by every claim that changes the owner; a fenced append
--   is stored only while the run's epoch is still the writer's.
-- wake_at: when the run next needs a worker without its owner (epoch seconds); NULL: not by
--   itself (finished, paused, waiting for a signal). A due run (wake_at <= now) whose lease has
--   expired may be claimed by any worker. Unfinished runs from before this version are due.
-- commands: requests (cancel, signal, pause, unpause) for the process executing a run;
--   done_at/outcome are set once applied.

ALTER TABLE runs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE runs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN wake_at REAL;

UPDATE runs SET wake_at = updated_at
WHERE status IN ('INITIALIZING', 'RUNNING', 'ROLLBACK', 'WAITING_APPROVAL');

CREATE INDEX runs_due ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_by_owner ON runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL DEFAULT '{}',
    actor      TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    done_at    REAL,
    outcome    TEXT
);

CREATE INDEX commands_pending ON commands (run_id, id) WHERE done_at IS NULL;
