"""The PostgreSQL store's raw reads for the audit verifier: rows as the database holds them
(JSON columns as their text), nothing decoded, so that a row someone edited by hand is
reported by the verifier instead of failing the read."""

from __future__ import annotations

from typing import Any

import psycopg

from cadenza.core.ids import RunId
from cadenza.store import _pg_approvals
from cadenza.store.base import StoredEvent, StoredLog, StoredRun, StoredSnapshot

RUN_IDS = "SELECT run_id FROM runs ORDER BY created_at DESC, pos DESC"
ORPHAN_IDS = (
    "SELECT run_id FROM events UNION SELECT run_id FROM snapshots "
    "UNION SELECT run_id FROM pending_approvals EXCEPT SELECT run_id FROM runs ORDER BY 1"
)
# The first statement of the read's transaction: one snapshot of the database for all four
# reads, so that a run being appended to meanwhile is seen whole.
CONSISTENT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
RUN = "SELECT workflow, version, status, input::text FROM runs WHERE run_id = %s"
EVENTS = (
    "SELECT seq, type, path, scope, attempt, data::text, ts, prev_hash, hash FROM events "
    "WHERE run_id = %s ORDER BY seq"
)
SNAPSHOT = "SELECT seq, state::text, buffers::text FROM snapshots WHERE run_id = %s"


async def stored_run_ids(conn: psycopg.AsyncConnection[Any]) -> list[RunId]:
    async with conn.transaction():
        await conn.execute(CONSISTENT)
        ids = [row[0] for row in await (await conn.execute(RUN_IDS)).fetchall()]
        ids += [row[0] for row in await (await conn.execute(ORPHAN_IDS)).fetchall()]
    return [RunId(i) for i in ids if isinstance(i, str)]


async def read_stored(conn: psycopg.AsyncConnection[Any], run_id: RunId) -> StoredLog:
    async with conn.transaction():
        await conn.execute(CONSISTENT)
        run = await (await conn.execute(RUN, (run_id,))).fetchone()
        events = await (await conn.execute(EVENTS, (run_id,))).fetchall()
        snapshot = await (await conn.execute(SNAPSHOT, (run_id,))).fetchone()
        approvals = await _pg_approvals.stored(conn, run_id)
    return StoredLog(
        run_id,
        StoredRun(*run) if run is not None else None,
        [StoredEvent(*row) for row in events],
        StoredSnapshot(*snapshot) if snapshot is not None else None,
        approvals,
    )
