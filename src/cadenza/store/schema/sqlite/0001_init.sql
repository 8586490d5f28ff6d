-- Cadenza SQLite schema, version 1.
--
-- JSON columns hold UTF-8 text written by pydantic_core.to_json, so they can be queried with
-- SQLite's json_extract(). Timestamps are epoch seconds (REAL). No STRICT tables: they need
-- SQLite 3.37, and the Python a user runs may link an older library.

CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    workflow      TEXT NOT NULL,
    version       TEXT NOT NULL,
    status        TEXT NOT NULL,
    target        TEXT NOT NULL DEFAULT '',
    input         TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    deadline      REAL,
    owner         TEXT,
    lease_until   REAL,
    parent_run_id TEXT
);

-- list_runs: newest first, optionally filtered by status and/or workflow.
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- A run's log: seq numbers its events from 1 with no gaps; the primary key refuses a taken seq.
CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    type    TEXT NOT NULL,
    path    TEXT NOT NULL DEFAULT '',
    scope   TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    data    TEXT NOT NULL DEFAULT '{}',
    ts      REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- The latest folded state of a run, as of event seq.
CREATE TABLE snapshots (
    run_id  TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    state   TEXT NOT NULL,
    buffers TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
