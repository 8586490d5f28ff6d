-- Cadenza PostgreSQL schema, version 5: pending approvals, a materialised view of the logs
-- (the SQLite schema's version 5).
--
-- pending_approvals: one row per approval request that waits for a decision in a run that has
--   not finished (cadenza.store._approvals says which events open, change and close one). The
--   group commit writes it in the transaction that stores those events; the log stays the
--   truth, and `cadenza audit verify` checks the rows against its fold. Listing joins the
--   run's row (its status and workflow).
-- approval_approvers: one row per (request, approver name), so that "the requests a user may
--   decide" is a B-tree range per name (the user's and each role's), already in listing order
--   (since, run_id, path): a page costs its own rows, however many requests wait for others.
--   (A GIN index on an approvers array finds the same requests, but unordered: a page would
--   sort every match first.)
-- Keys are COLLATE "C": pages are in code-point order whatever the database's collation, as in
-- the other stores.
--
-- Requests of runs written before this version are filled in from their logs when this
-- migration is applied (cadenza.store._pg_approvals.backfill, same transaction).

CREATE TABLE pending_approvals (
    run_id      text COLLATE "C" NOT NULL,
    path        text COLLATE "C" NOT NULL,
    approvers   text[] NOT NULL,
    quorum      bigint NOT NULL,
    approved_by text[] NOT NULL DEFAULT '{}',
    summary     text,
    show        json NOT NULL DEFAULT 'null',
    since       double precision NOT NULL,
    deadline    double precision,
    PRIMARY KEY (run_id, path)
);

CREATE INDEX pending_approvals_by_since ON pending_approvals (since, run_id, path);

CREATE TABLE approval_approvers (
    approver text COLLATE "C" NOT NULL,
    since    double precision NOT NULL,
    run_id   text COLLATE "C" NOT NULL,
    path     text COLLATE "C" NOT NULL,
    PRIMARY KEY (approver, since, run_id, path)
);

CREATE INDEX approval_approvers_by_request ON approval_approvers (run_id, path);
