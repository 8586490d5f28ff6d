-- Cadenza SQLite schema, version 4: LangGraph checkpoints (cadenza.langgraph.checkpoint).
--
-- A thread's checkpoints, their channel values and their pending writes. Each thread is also a
-- run in `runs`, its checkpoints events in its log. Values and writes are bytes written by the
-- saver's serializer (`type` names its format).
--
-- langgraph_checkpoints: one row per checkpoint, without its channel values. run_id is the
--   LangGraph run that wrote it (from the metadata, for delete_for_runs); metadata is JSON
--   (list filters use json_extract); due is the JSON list of the nodes it has due next. A rowid
--   table: a new row is appended to the last page and only the small key goes into the middle
--   of a b-tree (the primary key's index), where a row of its own would split pages.
-- langgraph_blobs: one row per channel version. kind 0: the value; 1: list items appended to
--   the value at version `base` (of the same channel); 2: the channel was emptied. tag is a
--   random token of the row's write: a delta is stored only while its base still has the tag
--   its writer saw. The key puts the version first: LangGraph gives every channel a step
--   updates the same new version, so one checkpoint's rows are neighbours (one page to write).
-- langgraph_writes: the writes of a checkpoint's tasks (idx < 0: errors, interrupts, ...).

CREATE TABLE langgraph_checkpoints (
    thread_id            TEXT NOT NULL,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    run_id               TEXT,
    type                 TEXT NOT NULL,
    checkpoint           BLOB NOT NULL,
    metadata             TEXT NOT NULL DEFAULT '{}',
    due                  TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);

CREATE INDEX langgraph_checkpoints_by_run ON langgraph_checkpoints (run_id)
    WHERE run_id IS NOT NULL;

CREATE TABLE langgraph_blobs (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    kind          INTEGER NOT NULL,
    base          TEXT,
    tag           INTEGER NOT NULL,
    type          TEXT,
    blob          BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, version, channel)
) WITHOUT ROWID;

CREATE TABLE langgraph_writes (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    task_path     TEXT NOT NULL DEFAULT '',
    idx           INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    type          TEXT,
    blob          BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID;
