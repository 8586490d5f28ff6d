"""The checkpointers' reads: a checkpoint's tuple (its values rebuilt from their blob rows,
its pending writes), and the rows a listing returns. Operations like :mod:`._ops`'."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple

from cadenza.langgraph.checkpoint._delta import rebuild, version_key
from cadenza.langgraph.checkpoint._ops import Context, config_of, thread_of
from cadenza.langgraph.checkpoint._sql import check_filter_key
from cadenza.store.runlog import Mode, Op, Stmt

__all__ = ["get_tuple", "list_rows", "load_tuple"]


def get_tuple(ctx: Context, config: RunnableConfig) -> Op[CheckpointTuple | None]:
    d = ctx.dialect
    thread_id, ns, checkpoint_id = thread_of(config)
    params: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        params["checkpoint_id"] = str(checkpoint_id)
        row = yield Stmt(d.get_checkpoint, params, Mode.ONE)
    else:
        row = yield Stmt(d.latest_checkpoint, params, Mode.ONE)
    if row is None:
        return None
    return (yield from load_tuple(ctx, row, remember=True))


def load_tuple(ctx: Context, row: Sequence[Any], *, remember: bool) -> Op[CheckpointTuple]:
    """The tuple of a checkpoint row ``(thread_id, checkpoint_ns, checkpoint_id, parent_id,
    type, checkpoint, metadata)``; ``remember``: note its lists as bases of the next deltas."""
    d, serde = ctx.dialect, ctx.serde
    thread_id, ns, checkpoint_id, parent_id, type_, data, metadata = row
    checkpoint = serde.loads_typed((type_, bytes(data)))
    values: dict[str, Any] = checkpoint.get("channel_values") or {}  # those stored inline
    versions = checkpoint.get("channel_versions") or {}
    wanted = [(c, version_key(v)) for c, v in versions.items() if c not in values]
    if wanted:
        rows = yield Stmt(d.chain, d.chain_params(thread_id, ns, wanted), Mode.ALL)
        rebuilt, known = rebuild(thread_id, ns, rows, serde)
        values.update(rebuilt)
        if remember:
            for channel, k in known.items():
                ctx.memo.put((thread_id, ns, channel), k)
    checkpoint["channel_values"] = values
    keys = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    writes = yield Stmt(d.get_writes, keys, Mode.ALL)
    writes = sorted(writes, key=lambda w: (w[4], w[0], w[5]))  # LangGraph's writes_sort_key
    return CheckpointTuple(
        config_of(thread_id, ns, checkpoint_id),
        checkpoint,
        json.loads(metadata) if metadata else {},
        config_of(thread_id, ns, parent_id) if parent_id else None,
        [
            (w[0], w[1], serde.loads_typed((w[2], bytes(w[3]) if w[3] is not None else b"")))
            for w in writes
        ],
    )


def list_rows(
    ctx: Context,
    config: RunnableConfig | None,
    filter: Mapping[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Op[list[Any]]:
    """The checkpoint rows a listing returns, newest first."""
    thread_id = ns = checkpoint_id = None
    if config is not None:
        configurable = config.get("configurable") or {}
        if configurable.get("thread_id") is not None:
            thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns")
        checkpoint_id = configurable.get("checkpoint_id")
    before_id = (before.get("configurable") or {}).get("checkpoint_id") if before else None
    filters = dict(filter or {})
    for key in filters:
        check_filter_key(key)
    in_sql = {k: v for k, v in filters.items() if ctx.dialect.filters_in_sql(v)}
    later = {k: v for k, v in filters.items() if k not in in_sql}
    if limit is not None and limit <= 0:
        return []
    sql, params = ctx.dialect.list_checkpoints(
        thread_id, ns, checkpoint_id, before_id, in_sql, None if later else limit
    )
    rows = yield Stmt(sql, params, Mode.ALL)
    if later:
        rows = [r for r in rows if _matches(json.loads(r[6]) if r[6] else {}, later)]
        rows = rows[:limit] if limit is not None else rows
    return list(rows)


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(key in metadata and metadata[key] == value for key, value in wanted.items())
