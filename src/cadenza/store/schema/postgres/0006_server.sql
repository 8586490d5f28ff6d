-- Cadenza PostgreSQL schema, version 6: what `cadenza serve` keeps besides the runs (the
-- SQLite schema's version 6).
--
-- api_keys: one row per API key (cadenza.server.auth.keys): only the SHA-256 of the key is
--   kept (hash, what a presented key is looked up by); times are epoch seconds (revoked NULL
--   while valid, last_used updated at most once a minute).
-- idempotency_keys: the run a caller's Idempotency-Key started, with the SHA-256 of the
--   request it came with; the primary key is what makes concurrent requests with one key, on
--   any number of servers, start one run. state is 'pending' until the run is stored.
-- inbound_webhooks: the webhook-id of every callback delivered to a run's step; the primary
--   key makes a repeated id a no-op. delivered is NULL while the signal is being delivered.
-- server_audit: authentication failures and refusals that concern no run (a run's refusals
--   are in its own log).

CREATE TABLE api_keys (
    id        text PRIMARY KEY,
    name      text NOT NULL,
    roles     text[] NOT NULL DEFAULT '{}',
    hash      text NOT NULL UNIQUE,
    created   double precision NOT NULL,
    expires   double precision,
    revoked   double precision,
    last_used double precision
);

CREATE INDEX api_keys_by_name ON api_keys (name);

CREATE TABLE idempotency_keys (
    owner        text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    request_hash text NOT NULL,
    run_id       text NOT NULL,
    state        text NOT NULL DEFAULT 'pending',
    created      double precision NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE TABLE inbound_webhooks (
    run_id     text COLLATE "C" NOT NULL,
    step       text COLLATE "C" NOT NULL,
    webhook_id text COLLATE "C" NOT NULL,
    received   double precision NOT NULL,
    delivered  double precision,
    PRIMARY KEY (run_id, step, webhook_id)
);

CREATE TABLE server_audit (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       double precision NOT NULL,
    kind     text NOT NULL,
    identity text NOT NULL DEFAULT '',
    method   text NOT NULL DEFAULT '',
    path     text NOT NULL DEFAULT '',
    client   text NOT NULL DEFAULT '',
    reason   text NOT NULL
);

CREATE INDEX server_audit_by_at ON server_audit (at);
