-- Cadenza PostgreSQL schema, version 3: circuit breakers shared by every worker.
--
-- One row per breaker name holds its whole state (cadenza.resilience.BreakerRecord): the
-- window of recent outcomes as a byte ring (1 = failure), the state, when an open breaker may
-- probe again (epoch seconds), and the probes handed out. `version` is bumped by every write:
-- workers update a breaker by compare-and-set on it. (Bulkhead slots need no table: they are
-- session advisory locks, which PostgreSQL drops with the connection of a worker that dies.)

CREATE TABLE breakers (
    name       text PRIMARY KEY,
    version    bigint NOT NULL,
    size       integer NOT NULL,
    state      text NOT NULL,
    generation bigint NOT NULL,
    ring       bytea NOT NULL,
    head       integer NOT NULL,
    count      integer NOT NULL,
    failures   integer NOT NULL,
    open_until double precision NOT NULL,
    reason     text NOT NULL,
    probes_out integer NOT NULL,
    probes_ok  integer NOT NULL
);
