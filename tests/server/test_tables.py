"""The server's tables, the same tests on SQLite and PostgreSQL: API keys by hash, revoked by
id or name; idempotency keys and webhook ids that only one caller gets (and that can be taken
over once abandoned); the audit log; runs listed with filters and a cursor, in a stable order."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.server.auth import keys
from cadenza.server.tables import AuditEntry, RunQuery, ServerTables, open_tables
from cadenza.store.base import RunRecord, Store
from cadenza.store.url import open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def opened(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, ServerTables]]:
    where: Any = (
        tmp_path / "t.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    store = open_store(str(where))
    await store.open()
    tables = open_tables(store)
    await tables.open()
    try:
        yield store, tables
    finally:
        await tables.close()
        await store.close()


async def test_keys(opened: tuple[Store, ServerTables]) -> None:
    _, tables = opened
    now = time.time()
    first, one = keys.generate("ci", ["operator"], now=now)
    _, two = keys.generate("ci", ["viewer"], now=now + 1, lifetime=60)
    _, other = keys.generate("ops", [], now=now + 2)
    for record in (one, two, other):
        await tables.add_key(record)
    assert await tables.key_by_hash(keys.key_hash(first)) == one
    assert await tables.key_by_hash("0" * 64) is None
    assert [k.id for k in await tables.list_keys()] == [one.id, two.id, other.id]
    await tables.touch_key(one.id, now + 5)
    assert (await tables.key_by_hash(one.hash)).last_used == now + 5  # type: ignore[union-attr]
    revoked = await tables.revoke_keys("ci", now + 10)
    assert [k.id for k in revoked] == [one.id, two.id] and {k.revoked for k in revoked} == {
        now + 10
    }
    assert await tables.revoke_keys("ci", now + 20) == []  # none valid left of that name
    by_id = await tables.revoke_keys(one.id, now + 30)
    assert [k.revoked for k in by_id] == [now + 10]  # revoked once, when first revoked
    assert (await tables.key_by_hash(other.hash)).revoked is None  # type: ignore[union-attr]


async def test_reservations(opened: tuple[Store, ServerTables]) -> None:
    _, tables = opened
    now = time.time()
    mine = await tables.reserve("key:a", "k1", "h1", RunId("r1"), now)
    theirs = await tables.reserve("key:a", "k1", "h2", RunId("r2"), now)
    assert mine.run_id == theirs.run_id == "r1" and theirs.request_hash == "h1"
    assert (await tables.reserve("key:b", "k1", "h3", RunId("r3"), now)).run_id == "r3"
    assert not await tables.take_over("key:a", "k1", RunId("r1"), RunId("r4"), now)
    assert await tables.take_over("key:a", "k1", RunId("r1"), RunId("r4"), now + 3600)
    await tables.settle("key:a", "k1", RunId("r4"))
    settled = await tables.reservation("key:a", "k1")
    assert settled is not None and (settled.run_id, settled.state) == ("r4", "done")
    await tables.release("key:b", "k1", RunId("other"))
    assert await tables.reservation("key:b", "k1") is not None
    await tables.release("key:b", "k1", RunId("r3"))
    assert await tables.reservation("key:b", "k1") is None


async def test_webhook_ids(opened: tuple[Store, ServerTables]) -> None:
    _, tables = opened
    run = RunId("run")
    first = await tables.claim_webhook(run, "step", "msg", 100.0)
    again = await tables.claim_webhook(run, "step", "msg", 200.0)
    assert first.mine and not again.mine and again.received == 100.0
    assert (await tables.claim_webhook(run, "other", "msg", 200.0)).mine
    assert not await tables.take_over_webhook(run, "step", "msg", 100.0, 120.0)
    assert await tables.take_over_webhook(run, "step", "msg", 100.0, 1000.0)
    await tables.webhook_delivered(run, "step", "msg", 1001.0)
    assert (await tables.claim_webhook(run, "step", "msg", 2000.0)).delivered == 1001.0
    await tables.forget_webhook(run, "step", "msg")  # delivered: kept
    assert not (await tables.claim_webhook(run, "step", "msg", 3000.0)).mine


async def test_audit_log(opened: tuple[Store, ServerTables]) -> None:
    _, tables = opened
    entries = [
        AuditEntry(float(i), "authentication_failed", f"why {i}", path="/v1") for i in range(5)
    ]
    await tables.record(entries)
    await tables.record([])
    logged = await tables.audit_log(limit=3)
    assert [e.reason for e in logged] == ["why 0", "why 1", "why 2"]
    rest = await tables.audit_log(after=logged[-1].id)
    assert [e.reason for e in rest] == ["why 3", "why 4"]


def _run(run_id: str, workflow: str, created: float, **fields: Any) -> RunRecord:
    fields.setdefault("status", WorkflowStatus.COMPLETED)
    return RunRecord(
        RunId(run_id), workflow, "v1", created_at=created, updated_at=created, **fields
    )


async def test_listing_runs(opened: tuple[Store, ServerTables]) -> None:
    store, tables = opened
    records = [
        _run("a", "w1", 10.0),
        _run("c", "w1", 20.0),
        _run("b", "w1", 20.0),  # a tie: run ids break it
        _run("d", "w2", 30.0, status=WorkflowStatus.RUNNING, parent_run_id=RunId("a")),
        _run("e", "w3", 40.0),
    ]
    for record in records:
        created = Event(record.run_id, 1, EventType.RUN_CREATED, data={"workflow": "x"}, ts=0)
        moved = {"from": "INITIALIZING", "to": str(record.status)}
        status = Event(record.run_id, 2, EventType.STATUS, data=moved, ts=0)
        await store.create_run(record, [created, status])
    everything = [r.run_id for r in await tables.list_runs(RunQuery())]
    assert everything == ["e", "d", "c", "b", "a"]
    pages, after = [], None
    while True:
        page = await tables.list_runs(RunQuery(after=after, limit=2))
        if not page:
            break
        pages.append([r.run_id for r in page])
        after = (page[-1].created_at, page[-1].run_id)
    assert pages == [["e", "d"], ["c", "b"], ["a"]]
    assert [r.run_id for r in await tables.list_runs(RunQuery(workflows=["w1", "w2"]))] == [
        "d", "c", "b", "a",
    ]  # fmt: skip
    assert await tables.list_runs(RunQuery(workflows=[])) == []
    query = RunQuery(statuses=[WorkflowStatus.RUNNING])
    assert [r.run_id for r in await tables.list_runs(query)] == ["d"]
    assert [r.run_id for r in await tables.list_runs(RunQuery(parent="a"))] == ["d"]
    window = RunQuery(created_after=20.0, created_before=40.0)
    assert [r.run_id for r in await tables.list_runs(window)] == ["d", "c", "b"]
    assert [(v.version, v.runs) for v in await tables.versions("w1")] == [("v1", 3)]
    heads = await tables.active_heads(None, updated_since=35.0, limit=10)
    assert {(h.run_id, h.seq) for h in heads} == {("d", 2), ("e", 2)}
    assert await tables.active_heads(["w1"], updated_since=35.0, limit=10) == []
    assert [e.seq for e in await tables.events(RunId("d"), after_seq=0, limit=5)] == [1, 2]
    assert [e.seq for e in await tables.events(RunId("d"), after_seq=1, limit=5)] == [2]
    assert await tables.last_seq(RunId("d")) == 2 and await tables.last_seq(RunId("zz")) == 0
    assert await tables.schema_version() >= 6
