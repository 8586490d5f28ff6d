"""The checkpointers' operations, written once for both databases and both calling styles.

Each operation is a generator that yields :class:`~cadenza.store.runlog.Stmt` (a statement, its
parameters, and what to send back: a row count, one row, all rows) and returns its result: it
holds the logic and no I/O. The savers run it with :func:`~cadenza.store.runlog.drive` (a
DB-API cursor: ``sqlite3`` or psycopg) or :func:`~cadenza.store.runlog.adrive` (psycopg's async
cursor), inside one transaction per operation. A thread's run is written through the store's
run log (:class:`~cadenza.store.runlog.RunLog`), whose operations are of the same kind.

Every operation that changes a thread first reads its run's head (:func:`read_head`), which on
PostgreSQL locks the run's row: changes to one thread are serialised across processes, so the
run's log, the blobs and the garbage collection of blobs never race (SQLite serialises every
writer with ``BEGIN IMMEDIATE``). A SQLite saver's ``put`` may take the head from what it
remembers of its own last write instead (:mod:`._heads`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.core.errors import StoreError
from cadenza.core.ids import RunId
from cadenza.langgraph.checkpoint._delta import DELTA, ListMemo, is_inline, plan_blobs
from cadenza.langgraph.checkpoint._heads import HeadCache
from cadenza.langgraph.checkpoint._lifecycle import Cause
from cadenza.langgraph.checkpoint._runlog import Head, Log, Written, next_nodes, writes_status
from cadenza.langgraph.checkpoint._sql import Dialect
from cadenza.store.runlog import Mode, Op, RunLog, Stmt, sequence

__all__ = [
    "Context",
    "Mode",
    "Op",
    "Stmt",
    "coalesced",
    "config_of",
    "put",
    "put_writes",
    "read_head",
    "sequence",
    "thread_of",
    "write_log",
]

T = TypeVar("T")


@dataclass(slots=True)
class Context:
    """What the operations need from a saver, for one call."""

    dialect: Dialect
    run_log: RunLog  # the store's, for the threads' runs
    serde: SerializerProtocol
    memo: ListMemo
    full_every: int
    heads: HeadCache | None = None  # SQLite: the heads of the threads it wrote last
    #: what the call wrote to runs, for the saver's observers once it has committed (``None``:
    #: the saver has none)
    published: list[Written] | None = None


_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE)\s+(\w+)", re.IGNORECASE)
_tables: dict[str, str] = {}


def coalesced(op: Op[T]) -> Op[T]:
    """``op``, its deferrable statements (:attr:`Stmt.defer`) held back and run as few
    ``executemany`` as possible: before the next statement that is not deferrable, and at
    the end. Statements on one table keep their order (consecutive ones with the same SQL
    become one); tables have no triggers or foreign keys, so the order between them does
    not matter. For :meth:`~._base.CadenzaSaverBase.save_batch`: the steps of a run write
    one row per table each, which become one statement per table."""
    held: dict[str, list[tuple[str, list[Any]]]] = {}
    result: Any = None
    try:
        while True:
            stmt = op.send(result)
            if stmt.defer:
                table = _tables.get(stmt.sql)
                if table is None:
                    found = _TABLE.match(stmt.sql)
                    if found is None:
                        raise ValueError(f"not an INSERT or UPDATE: {stmt.sql[:60]!r}")
                    table = _tables[stmt.sql] = found.group(1)
                runs = held.setdefault(table, [])
                rows = stmt.params if stmt.mode is Mode.MANY else [stmt.params]
                if runs and runs[-1][0] == stmt.sql:
                    runs[-1][1].extend(rows)
                else:
                    runs.append((stmt.sql, list(rows)))
                result = None
                continue
            yield from _release(held)
            result = yield stmt
    except StopIteration as done:
        yield from _release(held)
        return done.value  # type: ignore[no-any-return]


def _release(held: dict[str, list[tuple[str, list[Any]]]]) -> Op[None]:
    for runs in held.values():
        for sql, rows in runs:
            yield Stmt(sql, rows, Mode.MANY)
    held.clear()


# -- config and metadata ------------------------------------------------------------------------


def thread_of(config: RunnableConfig) -> tuple[str, str, str | None]:
    """``(thread_id, checkpoint_ns, checkpoint_id)`` of a config."""
    configurable = config.get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None or thread_id == "":
        raise ValueError(
            "a checkpointer needs a thread: pass config={'configurable': {'thread_id': ...}}"
        )
    return (
        str(thread_id),
        configurable.get("checkpoint_ns") or "",
        configurable.get("checkpoint_id"),
    )


def config_of(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


# one encoder for every put (json.dumps with options builds a new one per call)
_encode_metadata = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    try:
        return _encode_metadata(metadata)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"checkpoint metadata must be JSON (str, numbers, bools, None, lists, dicts): {exc}"
        ) from exc


# -- writes -------------------------------------------------------------------------------------


def put(
    ctx: Context,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> Op[RunnableConfig]:
    d, serde = ctx.dialect, ctx.serde
    thread_id, ns, parent_id = thread_of(config)
    md = get_serializable_checkpoint_metadata(config, metadata)
    metadata_json = _metadata_json(md)
    values = checkpoint["channel_values"]
    row = {k: v for k, v in checkpoint.items() if k != "channel_values"}
    row["channel_values"] = {k: v for k, v in values.items() if is_inline(v)}
    type_, data = serde.dumps_typed(row)
    due = next_nodes(checkpoint)
    blobs = plan_blobs(thread_id, ns, values, new_versions, ctx.memo, serde, ctx.full_every)
    root_id = checkpoint["id"] if not ns else None
    heads = ctx.heads
    head = heads.head(thread_id, root_id) if heads is not None else None
    if head is not None:
        log = Log(head)
        log.checkpoint(checkpoint["id"], ns, parent_id, md, due)
        yield from write_log(ctx, log)
        assert heads is not None
        heads.remember(log, root_id or heads.last_root(thread_id))
    else:
        # LangGraph saves a checkpoint's writes concurrently with it: an interrupt may be first
        for _ in range(3):  # again if another process created the thread's run meanwhile
            log = yield from _log(ctx, thread_id, root_id)
            log.checkpoint(checkpoint["id"], ns, parent_id, md, due, special=log.head.special)
            if (yield from write_log(ctx, log)):
                break
        else:
            raise StoreError(f"thread {thread_id!r}: its run could not be created; try again")
        if heads is not None:
            last_root, pending = yield Stmt(d.thread_tip, {"run_id": thread_id}, Mode.ONE)
            if not pending:  # this checkpoint's row is still to come
                heads.remember(log, max(last_root or "", root_id or "") or None)
    run_id = md.get("run_id")
    yield Stmt(
        d.upsert_checkpoint,
        {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": parent_id,
            "run_id": None if run_id is None else str(run_id),
            "type": type_,
            "checkpoint": data,
            "metadata": metadata_json,
            "due": json.dumps(due),
        },
        Mode.EXEC,
        defer=True,
    )
    plain: list[dict[str, Any]] = []
    for blob in blobs:
        params = {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "channel": blob.channel,
            "version": blob.version,
            "kind": blob.kind,
            "tag": blob.tag,
            "type": blob.type,
            "blob": blob.blob,
        }
        if blob.kind == DELTA:
            params["base"], params["base_tag"] = blob.base, blob.base_tag
            if (yield Stmt(d.insert_delta, params, Mode.EXEC)) == 1:
                continue
            full = blob.as_full(serde)  # the base is gone or was rewritten: store it all
            known = ctx.memo.get((thread_id, ns, blob.channel))
            if known is not None and known.version == blob.version:
                known.tag, known.depth = full.tag, 0
            params = {**params, "kind": full.kind, "tag": full.tag}
            params.update(type=full.type, blob=full.blob)
            del params["base"], params["base_tag"]
        plain.append(params)
    if plain:
        yield Stmt(d.insert_blob, plain, Mode.MANY, defer=True)
    return config_of(thread_id, ns, checkpoint["id"])


def put_writes(
    ctx: Context,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str = "",
) -> Op[None]:
    d, serde = ctx.dialect, ctx.serde
    thread_id, ns, checkpoint_id = thread_of(config)
    if checkpoint_id is None:
        raise ValueError("put_writes needs the checkpoint's config (with its checkpoint_id)")
    if not writes:
        return
    rows = []
    for idx, (channel, value) in enumerate(writes):
        type_, blob = serde.dumps_typed(value)
        rows.append(
            {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": str(checkpoint_id),
                "task_id": task_id,
                "task_path": task_path,
                "idx": WRITES_IDX_MAP.get(channel, idx),
                "channel": channel,
                "type": type_,
                "blob": blob,
            }
        )
    special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
    yield Stmt(d.upsert_writes if special else d.insert_writes, rows, Mode.MANY, defer=True)
    if ctx.heads is not None and not ns and any(c in WRITES_IDX_MAP for c, _ in writes):
        ctx.heads.forget(thread_id)  # the put of this checkpoint must see them
    change = writes_status(writes) if not ns else None
    if change is None:
        return
    log = yield from _log(ctx, thread_id, str(checkpoint_id))
    if log.head.ours and log.head.stored:  # else the checkpoint's put, still to come, sets it
        log.set_status(*change, Cause.WRITES)
        yield from write_log(ctx, log)


def read_head(ctx: Context, thread_id: str, checkpoint_id: str | None = None) -> Op[Head]:
    """Lock the thread's run (PostgreSQL) and read its head, with what is stored about root
    checkpoint ``checkpoint_id`` (of a run that exists); forget what was remembered of it (the
    caller is about to change the thread).

    A run the lock did not find is read as not existing, even if another writer commits it
    before the head is read: the head of a run this transaction has not locked could be
    overtaken. Creating the run then conflicts (see :func:`write_log`) and the caller reads
    the head again, under the lock."""
    if ctx.heads is not None:
        ctx.heads.forget(thread_id)
    run = yield from ctx.run_log.head(RunId(thread_id))
    if checkpoint_id is None or not run.exists:
        return Head(run)
    params = {"run_id": thread_id, "checkpoint_id": checkpoint_id}
    special, stored = yield Stmt(ctx.dialect.root_checkpoint, params, Mode.ONE)
    return Head(run, tuple(special.split(",")) if special else (), bool(stored))


def _log(ctx: Context, thread_id: str, checkpoint_id: str | None = None) -> Op[Log]:
    return Log((yield from read_head(ctx, thread_id, checkpoint_id)))


def write_log(ctx: Context, log: Log) -> Op[bool]:
    """Write the log to the thread's run; ``False`` when another writer created the run
    meanwhile (nothing was written: read the head again)."""
    if not (yield from log.write(ctx.run_log)):
        return False
    if ctx.published is not None and log.events:
        ctx.published.append(log.published())
    return True
