-- Cadenza PostgreSQL schema, version 2: queues, fenced leases, due times and commands
-- (the SQLite schema's version 3).
--
-- queue: the queue a run was submitted to (workers serve the queues they are told to).
-- epoch: the lease epoch, incremented by every claim that changes the owner; a fenced append
--   is stored only while the run's epoch is still the writer's (checked under the row lock).
-- wake_at: when the run next needs a worker without its owner (epoch seconds); NULL: not by
--   itself (finished, paused, waiting for a signal). Workers claim due runs whose lease has
--   expired with SELECT ... FOR UPDATE SKIP LOCKED. Unfinished runs from before are due.
-- commands: requests (cancel, signal, pause, unpause) for the process executing a run;
--   done_at/outcome are set once applied.

ALTER TABLE runs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE runs ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN wake_at double precision;

UPDATE runs SET wake_at = updated_at
WHERE status IN ('INITIALIZING', 'RUNNING', 'ROLLBACK', 'WAITING_APPROVAL');

CREATE INDEX runs_due ON runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX runs_by_owner ON runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE commands (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id     text NOT NULL,
    kind       text NOT NULL,
    data       json NOT NULL DEFAULT '{}',
    actor      text NOT NULL DEFAULT '',
    created_at double precision NOT NULL,
    done_at    double precision,
    outcome    text
);

CREATE INDEX commands_pending ON commands (run_id, id) WHERE done_at IS NULL;
