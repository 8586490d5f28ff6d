"""The audit trail: the stores chain every event's hash when they append it, a touched event row
is found at exactly that event, and the compliance export says who did what, when and why."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import to_json

from cadenza import Engine, MemoryStore, RetryPolicy, Workflow, WorkflowStatus
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.observe.audit import (
    EXPORT_FIELDS,
    GENESIS,
    Broken,
    Reason,
    canonical,
    chain_hash,
    export,
    verify,
)
from cadenza.store._sqlite_migrate import split_sql_script
from cadenza.store.base import RunRecord, Store
from cadenza.store.migrate import load_migrations
from cadenza.store.sqlite import SQLiteStore

S = WorkflowStatus
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
RUN = RunId("r1")


def ev(seq: int, type: EventType = EventType.STEP_COMPLETED, run: str = RUN, **kw: Any) -> Event:
    return Event(run_id=RunId(run), seq=seq, type=type, ts=T0 + seq, **kw)


def status(seq: int, frm: str, to: str, run: str = RUN, **data: Any) -> Event:
    return ev(seq, EventType.STATUS, run, data={"from": frm, "to": to, **data})


def a_run(run: str = RUN) -> list[Event]:
    """A run's log: created, started, a step that fails once and then succeeds, paused and
    resumed by operators, failed in the end."""
    return [
        ev(1, EventType.RUN_CREATED, run, data={"workflow": "wf", "input": {"q": "Grüße"}}),
        status(2, "INITIALIZING", "RUNNING", run),
        ev(3, EventType.STEP_STARTED, run, path="draft"),
        ev(
            4,
            EventType.STEP_FAILED,
            run,
            path="draft",
            attempt=1,
            data={"error": "boom", "error_type": "ValueError", "retry": True},
        ),
        ev(
            5, run=run, path="draft", attempt=2, data={"update": {"text": "naïve — 東京", "x": 0.1}}
        ),
        status(6, "RUNNING", "PAUSED", run, actor="alice", reason="waiting for legal review"),
        status(7, "PAUSED", "RUNNING", run, actor="bob", comment="cleared"),
        status(8, "RUNNING", "FAILED", run, reason="step draft failed"),
    ]


def expected_hashes(events: list[Event]) -> list[str]:
    """The chain computed independently of any store."""
    hashes, prev = [], GENESIS
    for event in events:
        prev = chain_hash(prev, event)
        hashes.append(prev)
    return hashes


async def write(store: Store, events: list[Event]) -> None:
    """Store a log the way the engine does: created with its first event, then appends of one
    or more events, one of them held (``durable=False``)."""
    run = events[0].run_id
    await store.create_run(RunRecord(run, "wf", "v1"), events[:1])
    await store.append(run, events[1:2], status=S.RUNNING)
    await store.append(run, events[2:3], durable=False)
    await store.append(run, events[3:5])
    await store.append(run, events[5:])


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "a.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """A SQLite file holding :func:`a_run` (closed again, so the test can tamper with it)."""
    path = tmp_path / "audit.db"
    async with SQLiteStore(path) as s:
        await write(s, a_run())
    return path


async def read(path: Path, run: str = RUN) -> list[Event]:
    async with SQLiteStore(path) as s:
        return await s.read_events(RunId(run))


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql in statements:
            assert conn.execute(sql).rowcount >= 1, sql
    finally:
        conn.close()


# -- the encoding -------------------------------------------------------------------------------


class Draft(BaseModel):
    title: str
    tags: tuple[str, ...]


ODD_EVENTS = [
    ev(1),
    ev(2, data={"z": 1, "a": [1.5, 1e16, 1e-7, None, True, "é\t\x01"], "m": {"b": 2**70}}),
    ev(3, path='a/"b"\\c\n', scope="\u2028 ☕ 🎉", attempt=7,
       data={"draft": Draft(title="t", tags=("x",))}),
    Event(RUN, 4, EventType.TIMER_SET, ts=5),  # an integer ts is stored (and hashed) as 5.0
    Event(RUN, 5, EventType.TIMER_SET, ts=-0.0),
]  # fmt: skip


@pytest.mark.parametrize("event", ODD_EVENTS, ids=lambda e: f"seq{e.seq}")
def test_canonical_is_the_documented_json(event: Event) -> None:
    """What the module docstring tells an auditor to compute, with the stdlib alone."""
    stored_data = json.loads(to_json(event.data))  # the text the store keeps, decoded
    spec = json.dumps(
        {
            "attempt": event.attempt,
            "data": stored_data,
            "path": event.path,
            "run_id": event.run_id,
            "scope": event.scope,
            "seq": event.seq,
            "ts": float(event.ts) + 0.0,
            "type": str(event.type),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert canonical(event) == spec


def test_the_chain_is_sha256_over_the_previous_hash_and_the_encoding() -> None:
    first, second = a_run()[:2]
    h1 = chain_hash(GENESIS, first)
    assert h1 == hashlib.sha256(canonical(first)).hexdigest()
    assert chain_hash(h1, second) == hashlib.sha256(h1.encode() + canonical(second)).hexdigest()
    assert canonical(first).startswith('{"attempt":0,"data":{"input":{"q":"Grüße"},'.encode())


def test_the_hashes_take_no_part_in_equality() -> None:
    event = ev(1)
    hashed = replace(event, hash="x")
    assert hashed == event and hashed.hash == "x"
    assert Event.from_row(hashed.to_row()).hash == "x"
    assert "x" not in repr(hashed)


# -- the stores assign the chain ----------------------------------------------------------------


async def test_a_runs_events_verify(store: Store) -> None:
    written = a_run()
    await write(store, written)
    events = await store.read_events(RUN)
    assert events == written
    assert [e.hash for e in events] == expected_hashes(written)  # the same on every store
    assert [e.prev_hash for e in events] == [GENESIS, *expected_hashes(written)[:-1]]
    assert verify(events) is None


async def test_refused_appends_leave_the_chain_intact(store: Store) -> None:
    written = a_run()
    await write(store, written[:5])
    with pytest.raises(Exception, match="seq"):
        await store.append(RUN, [ev(7)])  # a gap: refused
    await store.append(RUN, written[5:])
    assert verify(await store.read_events(RUN)) is None


async def test_the_chain_continues_in_another_store_object(db: Path) -> None:
    """A store that has not cached the run reads the last hash with the last seq."""
    async with SQLiteStore(db) as s:
        await s.append(RUN, [ev(9), ev(10)])
    events = await read(db)
    assert [e.seq for e in events] == list(range(1, 11))
    assert verify(events) is None


async def test_runs_may_be_interleaved(store: Store) -> None:
    await write(store, a_run("r1"))
    await write(store, a_run("r2"))
    one, two = await store.read_events(RunId("r1")), await store.read_events(RunId("r2"))
    mixed = [e for pair in zip(one, two, strict=True) for e in pair]
    assert verify(mixed) is None
    assert one[0].hash != two[0].hash  # the run id is part of the encoding


# -- tampering ----------------------------------------------------------------------------------


async def test_an_untouched_database_verifies(db: Path) -> None:
    assert verify(await read(db)) is None


TAMPERING: dict[str, tuple[list[str], int, Reason]] = {
    "edit data": (
        ["UPDATE events SET data = json_set(data, '$.error', 'fine') WHERE seq = 4"],
        4,
        Reason.EDITED,
    ),
    "edit who": (
        ["UPDATE events SET data = json_set(data, '$.actor', 'mallory') WHERE seq = 6"],
        6,
        Reason.EDITED,
    ),
    "edit ts": (["UPDATE events SET ts = ts - 3600 WHERE seq = 5"], 5, Reason.EDITED),
    "edit type": (["UPDATE events SET type = 'step_completed' WHERE seq = 4"], 4, Reason.EDITED),
    "edit hash": (
        ["UPDATE events SET hash = substr(hash, 2) || '0' WHERE seq = 3"],
        3,
        Reason.EDITED,
    ),
    "delete": (["DELETE FROM events WHERE seq = 5"], 6, Reason.DELETED),
    "delete two": (["DELETE FROM events WHERE seq IN (3, 4)"], 5, Reason.DELETED),
    "delete first": (["DELETE FROM events WHERE seq = 1"], 2, Reason.DELETED),
    "delete and renumber": (
        [
            "DELETE FROM events WHERE seq = 5",
            "UPDATE events SET seq = seq - 1 WHERE seq > 5",
        ],
        5,
        Reason.DELETED,
    ),
    "swap seq": (
        [
            "UPDATE events SET seq = -1 WHERE seq = 4",
            "UPDATE events SET seq = 4 WHERE seq = 5",
            "UPDATE events SET seq = 5 WHERE seq = -1",
        ],
        4,
        Reason.REORDERED,
    ),
    "unhash": (["UPDATE events SET hash = '' WHERE seq = 7"], 7, Reason.UNHASHED),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_found_at_that_event(db: Path, case: str) -> None:
    statements, seq, reason = TAMPERING[case]
    tamper(db, *statements)
    broken = verify(await read(db))
    assert broken is not None
    assert (broken.run_id, broken.seq, broken.reason) == (RUN, seq, reason), broken.detail


async def test_only_the_touched_run_is_reported(db: Path) -> None:
    async with SQLiteStore(db) as s:
        await write(s, a_run("r2"))
    tamper(db, "UPDATE events SET ts = ts + 1 WHERE run_id = 'r2' AND seq = 3")
    assert verify(await read(db, "r1")) is None
    broken = verify([*(await read(db, "r1")), *(await read(db, "r2"))])
    assert broken is not None
    assert (broken.run_id, broken.seq, broken.reason) == ("r2", 3, Reason.EDITED)


async def test_a_recomputed_chain_or_a_cut_tail_needs_an_anchor(db: Path) -> None:
    """The limits of a chain without a secret: rewriting every hash after an edit, or removing
    the last events, leaves a valid chain. A (seq, hash) kept outside the store catches both."""
    original = await read(db)
    anchor = {RUN: (8, original[-1].hash)}
    assert verify(original, anchors=anchor) is None

    # cut the tail
    tamper(db, "DELETE FROM events WHERE seq >= 7")
    cut = await read(db)
    assert verify(cut) is None
    assert verify(cut, anchors=anchor) == Broken(
        RUN, 7, Reason.TRUNCATED, "the anchored event 8 is missing"
    )

    # edit event 4 and recompute every hash from there on
    forged = [*original[:3], replace(original[3], type=EventType.STEP_COMPLETED), *original[4:]]
    rehashed, prev = [], GENESIS
    for e in forged:
        rehashed.append(replace(e, prev_hash=prev, hash=chain_hash(prev, e)))
        prev = rehashed[-1].hash
    assert verify(rehashed) is None
    broken = verify(rehashed, anchors=anchor)
    assert broken is not None and (broken.seq, broken.reason) == (8, Reason.REWRITTEN)


async def test_events_from_before_the_audit_trail_are_unhashed(tmp_path: Path) -> None:
    """A database of schema version 1 gains the columns; its old events have no hash."""
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    init = load_migrations("sqlite")[0]
    for statement in split_sql_script(init.sql):
        conn.execute(statement)
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at REAL NOT NULL)"
    )
    conn.execute("INSERT INTO schema_version VALUES (1, 'init', 0)")
    conn.execute(
        "INSERT INTO runs (run_id, workflow, version, status, created_at, updated_at) "
        "VALUES ('old', 'wf', 'v1', 'RUNNING', 0, 0)"
    )
    conn.execute("INSERT INTO events (run_id, seq, type, ts) VALUES ('old', 1, 'run_created', 0)")
    conn.close()
    async with SQLiteStore(path) as s:
        await s.append(RunId("old"), [ev(2, run="old")])
        events = await s.read_events(RunId("old"))
    assert [bool(e.hash) for e in events] == [False, True]
    assert verify(events) == Broken(RunId("old"), 1, Reason.UNHASHED, "the event has no hash")


# -- export -------------------------------------------------------------------------------------


def by_seq(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["seq"]): r for r in records}


async def test_export_jsonl(db: Path) -> None:
    events = await read(db)
    lines = export(events, "jsonl").splitlines()
    records = by_seq([json.loads(line) for line in lines])
    assert list(records[1]) == list(EXPORT_FIELDS)
    assert records[4] == {
        "run_id": RUN,
        "seq": 4,
        "when": "2023-11-14T22:13:24.000000Z",
        "who": None,
        "what": "step_failed draft",
        "why": "ValueError: boom",
        "hash": events[3].hash,
        "prev_hash": events[2].hash,
    }
    paused = records[6]
    assert (paused["who"], paused["what"], paused["why"]) == (
        "alice",
        "status RUNNING->PAUSED",
        "waiting for legal review",
    )
    assert paused["when"] == "2023-11-14T22:13:26.000000Z"
    assert (records[7]["who"], records[7]["why"]) == ("bob", "cleared")
    assert (records[8]["what"], records[8]["why"]) == (
        "status RUNNING->FAILED",
        "step draft failed",
    )


async def test_export_csv(db: Path) -> None:
    events = await read(db)
    text = export(events, "csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert text.splitlines()[0] == ",".join(EXPORT_FIELDS)
    records = by_seq(rows)
    assert len(records) == 8
    assert records[4]["who"] == ""
    assert (records[4]["what"], records[4]["why"]) == ("step_failed draft", "ValueError: boom")
    assert (records[6]["who"], records[6]["what"], records[6]["why"]) == (
        "alice",
        "status RUNNING->PAUSED",
        "waiting for legal review",
    )
    assert records[6]["when"] == "2023-11-14T22:13:26.000000Z"
    assert [r["hash"] for r in rows] == [e.hash for e in events]


def test_export_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export([], "xml")  # type: ignore[arg-type]


# -- end to end ---------------------------------------------------------------------------------


async def test_an_engine_run_verifies_and_exports(tmp_path: Path) -> None:
    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("boom")

    wf = Workflow("audited")
    wf.task(boom, name="call", retry=RetryPolicy(max_attempts=1))
    async with Engine(SQLiteStore(tmp_path / "e.db")) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.status is S.FAILED
    assert verify(events) is None
    records = [json.loads(line) for line in export(events, "jsonl").splitlines()]
    failed = [r for r in records if r["what"] == "step_failed call"]
    assert len(failed) == 1 and "boom" in failed[0]["why"]
    assert any(r["what"] == "status RUNNING->FAILED" for r in records)
