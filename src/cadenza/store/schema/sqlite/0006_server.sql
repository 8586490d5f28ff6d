-- Cadenza SQLite schema, version 6: what `cadenza serve` keeps besides the runs.
--
-- api_keys: one row per API key (cadenza.server.auth.keys): only the SHA-256 of the key is
--   kept (hash, what a presented key is looked up by); roles is a JSON list of names; times
--   are epoch seconds (revoked NULL while valid, last_used updated at most once a minute).
-- idempotency_keys: the run a caller's Idempotency-Key started, with the SHA-256 of the
--   request it came with; the primary key is what makes concurrent requests with one key
--   start one run. state is 'pending' until the run is stored, then 'done'.
-- inbound_webhooks: the webhook-id of every callback delivered to a run's step; the primary
--   key makes a repeated id a no-op. delivered is NULL while the signal is being delivered.
-- server_audit: authentication failures and refusals that concern no run (a run's refusals
--   are in its own log), newest last.

CREATE TABLE api_keys (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    roles     TEXT NOT NULL DEFAULT '[]',
    hash      TEXT NOT NULL UNIQUE,
    created   REAL NOT NULL,
    expires   REAL,
    revoked   REAL,
    last_used REAL
);

CREATE INDEX api_keys_by_name ON api_keys (name);

CREATE TABLE idempotency_keys (
    owner        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    created      REAL NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;

CREATE TABLE inbound_webhooks (
    run_id     TEXT NOT NULL,
    step       TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    received   REAL NOT NULL,
    delivered  REAL,
    PRIMARY KEY (run_id, step, webhook_id)
) WITHOUT ROWID;

CREATE TABLE server_audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '',
    method   TEXT NOT NULL DEFAULT '',
    path     TEXT NOT NULL DEFAULT '',
    client   TEXT NOT NULL DEFAULT '',
    reason   TEXT NOT NULL
);

CREATE INDEX server_audit_by_at ON server_audit (at);
