"""Operations that delete or copy checkpoints: ``delete_thread``, ``delete_for_runs``,
``copy_thread`` and ``prune`` (generators like :mod:`._ops`, run in one transaction each).

Blob rows are shared by every checkpoint of a namespace that has the same channel version, and
a delta row is read by every later version of its list, so after deleting checkpoints the
blobs are collected by reachability: a row stays while a remaining checkpoint needs it, itself
or as a base of what it needs (:func:`~._delta.needed_blobs`).

The thread's run and its log stay (the log is the audit trail): each deletion appends a
``status`` event saying what was deleted, and moves the run to the status of its latest
remaining root checkpoint, or to ``CANCELLED`` when none is left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cadenza.core.errors import StoreError
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint._delta import needed_blobs, version_key
from cadenza.langgraph.checkpoint._lifecycle import Cause
from cadenza.langgraph.checkpoint._ops import Context, Mode, Op, Stmt, read_head, write_log
from cadenza.langgraph.checkpoint._runlog import Head, Log, latest_status
from cadenza.langgraph.checkpoint._sql import TABLES

PRUNE_STRATEGIES = ("keep_latest", "delete")

# The latest root checkpoint left in a thread: its id and what it has due.
Latest = tuple[str, list[str]] | None


def _settle(ctx: Context, thread_id: str, latest: Latest) -> Op[tuple[WorkflowStatus, str | None]]:
    """The status a thread has after a change: its latest root checkpoint's."""
    if latest is None:
        return WorkflowStatus.CANCELLED, None
    checkpoint_id, due = latest
    keys = {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    special = yield Stmt(ctx.dialect.special_writes, keys, Mode.ALL)
    return latest_status(due, [channel for (channel,) in special])


def _record(ctx: Context, thread_id: str, head: Head, latest: Latest, why: str) -> Op[None]:
    """Record a deletion in the thread's run (if it is one of ours)."""
    if not head.ours:
        return
    status, _ = yield from _settle(ctx, thread_id, latest)
    log = Log(head)
    log.set_status(status, why, Cause.DELETION, always=True)
    yield from write_log(ctx, log)


def _delete_all(ctx: Context, thread_id: str) -> Op[int]:
    """Delete every row of a thread; returns how many checkpoints there were."""
    counts = []
    for table in TABLES:
        sql = ctx.dialect.delete_thread(table)
        counts.append((yield Stmt(sql, {"thread_id": thread_id}, Mode.EXEC)))
    ctx.memo.forget([thread_id])
    return int(counts[0])


def delete_thread(ctx: Context, thread_id: str) -> Op[None]:
    thread_id = str(thread_id)
    head = yield from read_head(ctx, thread_id)
    deleted = yield from _delete_all(ctx, thread_id)
    if deleted:
        why = f"delete_thread: {deleted} checkpoint(s) deleted"
        yield from _record(ctx, thread_id, head, None, why)


def delete_for_runs(ctx: Context, run_ids: Sequence[str]) -> Op[None]:
    d = ctx.dialect
    if isinstance(run_ids, str):
        raise TypeError("run_ids must be a sequence of run ids, not a str")
    run_ids = [str(r) for r in run_ids]
    if not run_ids:
        return
    wanted = d.array(run_ids)
    threads = yield Stmt(d.threads_of_runs, {"run_ids": wanted}, Mode.ALL)
    for (thread_id,) in sorted(threads):
        head = yield from read_head(ctx, thread_id)
        doomed = yield Stmt(
            d.checkpoints_of_runs, {"thread_id": thread_id, "run_ids": wanted}, Mode.ALL
        )
        if not doomed:
            continue
        keys = [
            {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
            for ns, checkpoint_id in doomed
        ]
        yield Stmt(d.delete_writes, keys, Mode.MANY)
        yield Stmt(d.delete_checkpoint, keys, Mode.MANY)
        latest = yield from collect_garbage(ctx, thread_id)
        why = f"delete_for_runs: {len(keys)} checkpoint(s) of run(s) {', '.join(run_ids)} deleted"
        yield from _record(ctx, thread_id, head, latest, why)


def prune(ctx: Context, thread_ids: Sequence[str], strategy: str) -> Op[None]:
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in PRUNE_STRATEGIES:
        raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
    for thread_id in sorted({str(t) for t in thread_ids}):
        head = yield from read_head(ctx, thread_id)
        if strategy == "delete":
            deleted = yield from _delete_all(ctx, thread_id)
            if deleted:
                why = f"prune (delete): {deleted} checkpoint(s) deleted"
                yield from _record(ctx, thread_id, head, None, why)
        else:
            yield from _keep_latest(ctx, thread_id, head)


def _keep_latest(ctx: Context, thread_id: str, head: Head) -> Op[None]:
    d = ctx.dialect
    heads = yield Stmt(d.heads, {"thread_id": thread_id}, Mode.ALL)
    keys = []
    for ns, checkpoint_id in heads:
        latest = {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
        for older_ns, older_id in (yield Stmt(d.older_than, latest, Mode.ALL)):
            keys.append(
                {"thread_id": thread_id, "checkpoint_ns": older_ns, "checkpoint_id": older_id}
            )
    if not keys:
        return
    yield Stmt(d.delete_writes, keys, Mode.MANY)
    yield Stmt(d.delete_checkpoint, keys, Mode.MANY)
    kept = [{"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": c} for ns, c in heads]
    yield Stmt(d.orphan_parent, kept, Mode.MANY)
    latest_root = yield from collect_garbage(ctx, thread_id)
    why = f"prune (keep_latest): {len(keys)} older checkpoint(s) deleted"
    yield from _record(ctx, thread_id, head, latest_root, why)


def collect_garbage(ctx: Context, thread_id: str) -> Op[Latest]:
    """Delete the thread's blob rows no remaining checkpoint needs; returns its latest root
    checkpoint."""
    d, serde = ctx.dialect, ctx.serde
    rows = yield Stmt(d.thread_checkpoints, {"thread_id": thread_id}, Mode.ALL)
    referenced: set[tuple[str, str, str]] = set()
    latest: Latest = None
    for ns, checkpoint_id, _, type_, data, _, due in rows:
        checkpoint = serde.loads_typed((type_, bytes(data)))
        for channel, version in (checkpoint.get("channel_versions") or {}).items():
            referenced.add((ns, channel, version_key(version)))
        if ns == "":
            latest = (checkpoint_id, json.loads(due))  # oldest first: the last is the latest
    index = yield Stmt(d.blob_index, {"thread_id": thread_id}, Mode.ALL)
    bases = {(ns, channel, version): base for ns, channel, version, base in index}
    keep = needed_blobs(referenced, bases)
    garbage = [
        {"thread_id": thread_id, "checkpoint_ns": ns, "channel": channel, "version": version}
        for ns, channel, version in bases
        if (ns, channel, version) not in keep
    ]
    if garbage:
        yield Stmt(d.delete_blob, garbage, Mode.MANY)
    ctx.memo.forget([thread_id])
    return latest


def copy_thread(ctx: Context, source: str, target: str) -> Op[None]:
    """Make ``target`` a copy of ``source``: its own checkpoints are replaced (so that no blob
    version of the copy can collide with one it had), and its run records each copied one."""
    d = ctx.dialect
    source, target = str(source), str(target)
    if source == target:
        return
    heads = {}
    for thread_id in sorted((source, target)):  # one lock order: no deadlock between copies
        heads[thread_id] = yield from read_head(ctx, thread_id)
    rows = yield Stmt(d.thread_checkpoints, {"thread_id": source}, Mode.ALL)
    if not rows:
        return
    yield from _delete_all(ctx, target)
    for sql in d.copies:
        yield Stmt(sql, {"source": source, "target": target}, Mode.EXEC)
    log = Log(heads[target])
    latest: Latest = None
    for ns, checkpoint_id, parent_id, _, _, metadata, due in rows:
        md = json.loads(metadata) if metadata else {}
        log.checkpoint(checkpoint_id, ns, parent_id, md, json.loads(due), copied_from=source)
        if ns == "":
            latest = (checkpoint_id, json.loads(due))
    status, reason = yield from _settle(ctx, target, latest)
    if latest is not None:
        log.set_status(status, reason, Cause.COPY)
    if not (yield from write_log(ctx, log)):
        raise StoreError(f"thread {target!r}: another writer created it meanwhile; try again")
