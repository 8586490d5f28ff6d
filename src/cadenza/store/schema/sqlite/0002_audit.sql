-- Cadenza SQLite schema, version 2: the tamper-evident audit trail.
--
-- Each event carries the hash of its run's previous event (prev_hash, '' for seq 1) and its
-- own hash: lowercase hex SHA-256 over prev_hash and the event's canonical encoding (see
-- cadenza.observe.audit). The store computes both when it appends. Events written before this
-- migration keep '' in both columns: `verify` reports them as unhashed.

ALTER TABLE events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT '';
