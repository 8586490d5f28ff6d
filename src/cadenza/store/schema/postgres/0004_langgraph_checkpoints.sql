-- Cadenza PostgreSQL schema, version 4: LangGraph checkpoints (cadenza.langgraph.checkpoint);
-- the SQLite schema's version 4.
--
-- A thread's checkpoints, their channel values and their pending writes. Each thread is also a
-- run in `runs`, its checkpoints events in its log. Values and writes are bytes written by the
-- saver's serializer (`type` names its format). Keys are COLLATE "C": checkpoints are listed
-- newest first by id, in byte order whatever the database's collation.
--
-- langgraph_checkpoints: one row per checkpoint, without its channel values. run_id is the
--   LangGraph run that wrote it (from the metadata, for delete_for_runs); metadata is jsonb
--   (list filters compare keys); due is the JSON list of the nodes it has due next.
-- langgraph_blobs: one row per channel version. kind 0: the value; 1: list items appended to
--   the value at version `base` (of the same channel); 2: the channel was emptied. tag is a
--   random token of the row's write: a delta is stored only while its base still has the tag
--   its writer saw. The key puts the version first: LangGraph gives every channel a step
--   updates the same new version, so one checkpoint's rows are neighbours (one page to write).
-- langgraph_writes: the writes of a checkpoint's tasks (idx < 0: errors, interrupts, ...).

CREATE TABLE langgraph_checkpoints (
    thread_id            text COLLATE "C" NOT NULL,
    checkpoint_ns        text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id        text COLLATE "C" NOT NULL,
    parent_checkpoint_id text COLLATE "C",
    run_id               text,
    type                 text NOT NULL,
    checkpoint           bytea NOT NULL,
    metadata             jsonb NOT NULL DEFAULT '{}',
    due                  text NOT NULL DEFAULT '[]',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);

CREATE INDEX langgraph_checkpoints_by_run ON langgraph_checkpoints (run_id)
    WHERE run_id IS NOT NULL;

CREATE TABLE langgraph_blobs (
    thread_id     text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    channel       text COLLATE "C" NOT NULL,
    version       text COLLATE "C" NOT NULL,
    kind          smallint NOT NULL,
    base          text COLLATE "C",
    tag           bigint NOT NULL,
    type          text,
    blob          bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, version, channel)
);

CREATE TABLE langgraph_writes (
    thread_id     text COLLATE "C" NOT NULL,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id       text COLLATE "C" NOT NULL,
    task_path     text NOT NULL DEFAULT '',
    idx           integer NOT NULL,
    channel       text NOT NULL,
    type          text,
    blob          bytea,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
