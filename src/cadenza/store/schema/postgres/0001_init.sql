-- Cadenza PostgreSQL schema, version 1 (the SQLite schema's versions 1 and 2 in one step).
--
-- The tables are created in the store's schema (the connection's search_path). JSON columns
-- are `json`, never `jsonb`: `json` keeps the text exactly as pydantic_core.to_json wrote it,
-- while `jsonb` reorders object keys and rewrites numbers, and the audit hash is taken over
-- the value decoded from the stored text. Timestamps are epoch seconds (double precision).

CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    workflow      text NOT NULL,
    version       text NOT NULL,
    status        text NOT NULL,
    target        text NOT NULL DEFAULT '',
    input         json NOT NULL DEFAULT '{}',
    error         text,
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL,
    deadline      double precision,
    owner         text,
    lease_until   double precision,
    parent_run_id text,
    -- insertion order: breaks ties of created_at when listing newest first
    pos           bigint GENERATED ALWAYS AS IDENTITY
);

-- list_runs: newest first, optionally filtered by status and/or workflow.
CREATE INDEX runs_by_created ON runs (created_at, pos);
CREATE INDEX runs_by_status ON runs (status, created_at, pos);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at, pos);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- A run's log: seq numbers its events from 1 with no gaps; the primary key refuses a taken seq.
-- prev_hash/hash chain the events (cadenza.observe.audit); the store computes them on append.
CREATE TABLE events (
    run_id    text NOT NULL,
    seq       integer NOT NULL,
    type      text NOT NULL,
    path      text NOT NULL DEFAULT '',
    scope     text NOT NULL DEFAULT '',
    attempt   bigint NOT NULL DEFAULT 0,
    data      json NOT NULL DEFAULT '{}',
    ts        double precision NOT NULL,
    prev_hash text NOT NULL DEFAULT '',
    hash      text NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, seq)
);

-- The latest folded state of a run, as of event seq.
CREATE TABLE snapshots (
    run_id  text PRIMARY KEY,
    seq     integer NOT NULL,
    state   json NOT NULL,
    buffers json NOT NULL DEFAULT '{}'
);
