-- Cadenza SQLite schema, version 5: pending approvals, a materialised view of the logs.
--
-- pending_approvals: one row per approval request that waits for a decision in a run that has
--   not finished (cadenza.store._approvals says which events open, change and close one). The
--   store writes it in the transaction that stores those events; the log stays the truth, and
--   `cadenza audit verify` checks the rows against its fold. approvers and approved_by are JSON
--   lists of names; show is JSON. Listing joins the run's row (its status and workflow).
-- approval_approvers: one row per (request, approver name), so that "the requests a user may
--   decide" is an index range per name (the user's and each of their roles'), already in
--   listing order (since, run_id, path): a page costs its own rows, however many requests
--   wait for others.
--
-- Requests of runs written before this version are filled in from their logs when this
-- migration is applied (cadenza.store._sqlite_approvals.backfill, same transaction).

CREATE TABLE pending_approvals (
    run_id      TEXT NOT NULL,
    path        TEXT NOT NULL,
    approvers   TEXT NOT NULL,
    quorum      INTEGER NOT NULL,
    approved_by TEXT NOT NULL DEFAULT '[]',
    summary     TEXT,
    show        TEXT NOT NULL DEFAULT 'null',
    since       REAL NOT NULL,
    deadline    REAL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;

CREATE INDEX pending_approvals_by_since ON pending_approvals (since, run_id, path);

CREATE TABLE approval_approvers (
    approver TEXT NOT NULL,
    since    REAL NOT NULL,
    run_id   TEXT NOT NULL,
    path     TEXT NOT NULL,
    PRIMARY KEY (approver, since, run_id, path)
) WITHOUT ROWID;

CREATE INDEX approval_approvers_by_request ON approval_approvers (run_id, path);
