"""SQLiteStore beyond the shared contract: configuration, migrations, group commit, failure
handling and crash consistency."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cadenza.core.errors import ConflictError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store.base import RunRecord, Snapshot, Store
from cadenza.store.migrate import load_migrations
from cadenza.store.sqlite import SQLiteStore, migrate_sqlite, split_sql_script

S = WorkflowStatus
SRC = Path(__file__).resolve().parents[2] / "src"
SCHEMA_SNAPSHOT = files("cadenza.store").joinpath("schema", "sqlite", "schema.sql")


def event(run_id: str, seq: int, type: EventType = EventType.STEP_COMPLETED, **kw: Any) -> Event:
    return Event(run_id=RunId(run_id), seq=seq, type=type, **kw)


async def start(store: Store, run_id: str) -> RunId:
    record = RunRecord(run_id=RunId(run_id), workflow="wf", version="v1")
    await store.create_run(record, [event(run_id, 1, EventType.RUN_CREATED)])
    return RunId(run_id)


def raw(path: Path) -> sqlite3.Connection:
    """A plain second connection, as another process (the CLI) would open."""
    return sqlite3.connect(path, isolation_level=None)


def stored_seqs(path: Path, run_id: str) -> list[int]:
    with raw(path) as conn:
        rows = conn.execute("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [seq for (seq,) in rows]


def commits(store: SQLiteStore) -> list[str]:
    """Record the COMMITs the store issues from now on."""
    seen: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cadenza.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db)
    await store.open()
    yield store
    await store.close()


# -- configuration ------------------------------------------------------------------------------


def test_path_from_argument_env_or_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_DB", "/somewhere/env.db")
    assert SQLiteStore(tmp_path / "arg.db").path == str(tmp_path / "arg.db")
    assert SQLiteStore().path == "/somewhere/env.db"
    monkeypatch.delenv("CADENZA_DB")
    assert SQLiteStore().path == "./cadenza.db"
    assert SQLiteStore(":memory:", fast=True).fast
    assert not SQLiteStore(":memory:").fast


async def test_default_file_is_created_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CADENZA_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    async with SQLiteStore() as store:
        await start(store, "r1")
    assert (tmp_path / "cadenza.db").exists()


@pytest.mark.parametrize(("fast", "synchronous"), [(False, 2), (True, 1)])
async def test_pragmas(db: Path, fast: bool, synchronous: int) -> None:
    async with SQLiteStore(db, fast=fast, busy_timeout=2.5) as store:
        assert store._conn is not None
        pragma = store._conn.execute
        assert pragma("PRAGMA journal_mode").fetchone() == ("wal",)
        assert pragma("PRAGMA synchronous").fetchone() == (synchronous,)
        assert pragma("PRAGMA busy_timeout").fetchone() == (2500,)


async def test_in_memory_database() -> None:
    async with SQLiteStore(":memory:") as store:
        run_id = await start(store, "r1")
        await store.append(run_id, [event("r1", 2)])
        assert [e.seq for e in await store.read_events(run_id)] == [1, 2]


async def test_open_is_idempotent_and_use_before_open_is_an_error(db: Path) -> None:
    store = SQLiteStore(db)
    with pytest.raises(StoreError, match="not open"):
        await store.get_run(RunId("r1"))
    await store.open()
    conn = store._conn
    await store.open()
    assert store._conn is conn
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.append(RunId("r1"), [])


async def test_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        await SQLiteStore(tmp_path / "no" / "such" / "dir" / "x.db").open()


# -- migrations ---------------------------------------------------------------------------------


def test_migrations_are_package_data() -> None:
    migrations = load_migrations("sqlite")
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init"
    assert "CREATE TABLE events" in migrations[0].sql


def test_split_sql_script() -> None:
    script = "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX b ON a (x); -- c\n"
    assert split_sql_script(script) == [
        "-- a comment\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE INDEX b ON a (x); -- c",
    ]
    with pytest.raises(StoreError, match="incomplete"):
        split_sql_script("CREATE TABLE a (x TEXT)")


def _schema(conn: sqlite3.Connection) -> str:
    rows = conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY tbl_name, type DESC, name"
    )
    return "".join(f"{sql};\n\n" for (sql,) in rows)


def test_migrations_produce_the_schema_snapshot() -> None:
    """``schema/sqlite/schema.sql`` shows the schema all migrations produce. After adding a
    migration, regenerate it with ``CADENZA_UPDATE_SCHEMA=1 pytest tests/store/test_sqlite.py``."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate_sqlite(conn)
    actual = _schema(conn)
    header = "-- Generated by tests/store/test_sqlite.py from the migrations; do not edit.\n\n"
    if os.environ.get("CADENZA_UPDATE_SCHEMA"):
        Path(str(SCHEMA_SNAPSHOT)).write_text(header + actual, encoding="utf-8")
    assert SCHEMA_SNAPSHOT.read_text(encoding="utf-8") == header + actual


async def test_reopening_applies_nothing_twice(db: Path) -> None:
    for _ in range(3):
        async with SQLiteStore(db):
            pass
    with raw(db) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
    assert versions == [m.version for m in load_migrations("sqlite")]


async def test_newer_schema_is_refused(db: Path) -> None:
    async with SQLiteStore(db):
        pass
    with raw(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="newer"):
        await SQLiteStore(db).open()


OPEN_AT_ONCE = """
import asyncio, os, sys
from cadenza.store.sqlite import SQLiteStore
path, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    pass
async def main():
    async with SQLiteStore(path):
        pass
asyncio.run(main())
print("ok")
"""


def test_processes_opening_a_new_file_at_once(tmp_path: Path) -> None:
    db, go = tmp_path / "new.db", tmp_path / "go"
    children = [python(OPEN_AT_ONCE, str(db), str(go)) for _ in range(6)]
    time.sleep(0.5)  # let them all reach the starting line
    go.touch()
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [child.returncode for child in children] == [0] * 6
    assert outputs == ["ok\n"] * 6
    with raw(db) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
    assert versions == [m.version for m in load_migrations("sqlite")]


# -- group commit -------------------------------------------------------------------------------


async def test_sequential_append_is_committed_when_it_returns(store: SQLiteStore, db: Path) -> None:
    run_id = await start(store, "r1")
    for seq in range(2, 6):
        await store.append(run_id, [event("r1", seq)])
        assert stored_seqs(db, "r1") == list(range(1, seq + 1))


async def test_concurrent_appends_share_one_commit(store: SQLiteStore) -> None:
    run_ids = [await start(store, f"r{i}") for i in range(200)]
    seen = commits(store)
    await asyncio.gather(*(store.append(r, [event(r, 2)], status=S.RUNNING) for r in run_ids))
    assert seen == ["COMMIT"]
    assert {run.status for run in await store.list_runs(limit=1000)} == {S.RUNNING}


async def test_creates_and_leases_are_group_committed_too(store: SQLiteStore) -> None:
    seen = commits(store)
    run_ids = await asyncio.gather(*(start(store, f"r{i}") for i in range(50)))
    assert len(seen) == 1
    claimed = await asyncio.gather(
        *(store.claim(r, "w", lease_until=time.time() + 30) for r in run_ids)
    )
    assert claimed == [True] * 50
    assert len(seen) == 2


async def test_a_conflict_fails_only_its_own_append(store: SQLiteStore, db: Path) -> None:
    run_ids = [await start(store, f"r{i}") for i in range(10)]
    # Another process takes seq 2 of r3, unknown to this store's cache of last seqs.
    with raw(db) as other:
        other.execute("INSERT INTO events (run_id, seq, type, ts) VALUES ('r3', 2, 'status', 0)")
    results = await asyncio.gather(
        *(store.append(r, [event(r, 2)], status=S.RUNNING) for r in run_ids),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["ConflictError"] + [
        "NoneType"
    ] * 6
    assert (await store.get_run(RunId("r3"))).status == S.INITIALIZING
    assert (await store.read_events(RunId("r3")))[1].type == EventType.STATUS
    # the cache was dropped: the next append is checked against the log as it now is
    with pytest.raises(ConflictError):
        await store.append(RunId("r3"), [event("r3", 2)])
    await store.append(RunId("r3"), [event("r3", 3)])
    assert stored_seqs(db, "r3") == [1, 2, 3]


async def test_refusals_in_a_batch_fail_only_their_own_write(store: SQLiteStore, db: Path) -> None:
    run_ids = [await start(store, f"r{i}") for i in range(4)]
    results = await asyncio.gather(
        store.append(run_ids[0], [event("r0", 2)]),
        store.claim(RunId("missing"), "w", lease_until=time.time() + 30),
        store.append(run_ids[1], [event("r1", 2, ts=None)]),  # type: ignore[arg-type]
        store.append(run_ids[2], [event("r2", 2, attempt=2**70)]),
        store.append(run_ids[3], [event("r3", 2)]),
        return_exceptions=True,
    )
    assert results[0] is None and results[4] is None
    assert type(results[1]).__name__ == "RunNotFound"
    for bad in results[2:4]:  # values SQLite cannot take are not conflicts
        assert type(bad) is StoreError
        assert "cannot store" in str(bad)
    assert [stored_seqs(db, f"r{i}") for i in range(4)] == [[1, 2], [1], [1], [1, 2]]
    await store.append(run_ids[1], [event("r1", 2)])  # the refused seq is free again
    assert stored_seqs(db, "r1") == [1, 2]


async def test_later_writes_of_a_failed_run_fail_in_the_same_batch(
    store: SQLiteStore, db: Path
) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", 2)])
    with raw(db) as other:
        other.execute("INSERT INTO events (run_id, seq, type, ts) VALUES ('r1', 3, 'status', 0)")
    first, second = await asyncio.gather(
        store.append(run_id, [event("r1", 3)]),
        store.append(run_id, [event("r1", 4)]),  # follows the refused seq 3, not the other's
        return_exceptions=True,
    )
    assert isinstance(first, ConflictError)
    assert isinstance(second, ConflictError)
    assert stored_seqs(db, "r1") == [1, 2, 3]


async def test_held_events_wait_for_a_durable_write(store: SQLiteStore, db: Path) -> None:
    run_id = await start(store, "r1")
    seen = commits(store)
    await store.append(run_id, [event("r1", 2, EventType.STEP_STARTED)], durable=False)
    await asyncio.sleep(0.01)
    assert seen == []
    assert stored_seqs(db, "r1") == [1]
    await store.append(run_id, [event("r1", 3)])
    assert seen == ["COMMIT"]
    assert stored_seqs(db, "r1") == [1, 2, 3]


async def test_close_writes_held_events(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", 2, EventType.STEP_STARTED)], durable=False)
    await store.close()
    assert stored_seqs(db, "r1") == [1, 2]


async def test_refused_held_events_fail_the_next_append(store: SQLiteStore, db: Path) -> None:
    run_id = await start(store, "r1")
    with raw(db) as other:
        other.execute("INSERT INTO events (run_id, seq, type, ts) VALUES ('r1', 2, 'status', 0)")
    await store.append(run_id, [event("r1", 2, EventType.STEP_STARTED)], durable=False)
    with pytest.raises(ConflictError):
        await store.append(run_id, [event("r1", 3)], status=S.RUNNING)
    assert stored_seqs(db, "r1") == [1, 2]
    assert (await store.get_run(run_id)).status == S.INITIALIZING


async def test_cancelled_append_stores_nothing(store: SQLiteStore, db: Path) -> None:
    run_id = await start(store, "r1")
    task = asyncio.create_task(store.append(run_id, [event("r1", 2)]))
    await asyncio.sleep(0)  # the append is queued, its batch not yet run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stored_seqs(db, "r1") == [1]
    await store.append(run_id, [event("r1", 2)])
    assert stored_seqs(db, "r1") == [1, 2]


async def test_write_lock_timeout_fails_the_batch(db: Path) -> None:
    async with SQLiteStore(db, busy_timeout=0.1) as store:
        run_id = await start(store, "r1")
        blocker = raw(db)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked"):
            await store.append(run_id, [event("r1", 2)], status=S.RUNNING)
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.append(run_id, [event("r1", 2)], status=S.RUNNING)
        assert stored_seqs(db, "r1") == [1, 2]


# -- encoding -----------------------------------------------------------------------------------


class Draft(BaseModel):
    title: str
    at: dt.datetime


async def test_pydantic_values_are_stored_as_json(store: SQLiteStore, db: Path) -> None:
    at = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    run_id = await start(store, "r1")
    await store.append(
        run_id,
        [event("r1", 2, data={"draft": Draft(title="Ünïcode", at=at)})],
        snapshot=Snapshot(2, {"drafts": [Draft(title="x", at=at)], "when": at}),
    )
    expected = {"title": "Ünïcode", "at": "2024-05-01T12:30:00Z"}
    assert (await store.read_events(run_id))[1].data == {"draft": expected}
    snapshot = await store.load_snapshot(run_id)
    assert snapshot is not None
    assert snapshot.state["when"] == "2024-05-01T12:30:00Z"
    with raw(db) as conn:  # readable from plain SQL
        (title,) = conn.execute(
            "SELECT json_extract(data, '$.draft.title') FROM events WHERE seq = 2"
        ).fetchone()
    assert title == "Ünïcode"


async def test_unencodable_data_is_refused_and_nothing_stored(store: SQLiteStore, db: Path) -> None:
    run_id = await start(store, "r1")
    with pytest.raises(StoreError, match="JSON"):
        await store.append(run_id, [event("r1", 2), event("r1", 3, data={"x": object()})])
    with pytest.raises(StoreError, match="JSON"):
        await store.append(run_id, [event("r1", 2)], snapshot=Snapshot(2, {"x": [object()]}))
    assert stored_seqs(db, "r1") == [1]
    await store.append(run_id, [event("r1", 2)])  # the log position is unchanged
    assert stored_seqs(db, "r1") == [1, 2]


# -- crash consistency --------------------------------------------------------------------------

APPEND_FOREVER = """
import asyncio, sys
from cadenza.core.ids import RunId
from cadenza.core.events import Event, EventType
from cadenza.core.status import WorkflowStatus
from cadenza.store.base import RunRecord, Snapshot
from cadenza.store.sqlite import SQLiteStore

async def drive(store, run_id):
    seq = len(await store.read_events(run_id))
    while True:
        to = [WorkflowStatus.RUNNING, WorkflowStatus.PAUSED][seq % 2]
        await store.append(run_id, [Event(run_id, seq + 1, EventType.STEP_STARTED)], durable=False)
        await store.append(
            run_id,
            [
                Event(run_id, seq + 2, EventType.STEP_COMPLETED, data={"n": seq + 2}),
                Event(run_id, seq + 3, EventType.STATUS, data={"to": str(to)}),
            ],
            status=to,
            snapshot=Snapshot(seq + 3, {"n": seq + 3, "to": str(to)}),
        )
        seq += 3

async def main(path, fast):
    store = SQLiteStore(path, fast=fast)
    await store.open()
    known = {run.run_id for run in await store.list_runs(limit=1000)}
    run_ids = [RunId(f"run-{i}") for i in range(20)]
    for run_id in run_ids:
        if run_id not in known:
            record = RunRecord(run_id=run_id, workflow="crash", version="v1")
            await store.create_run(record, [Event(run_id, 1, EventType.RUN_CREATED)])
    print("ready", flush=True)
    await asyncio.gather(*(drive(store, run_id) for run_id in run_ids))

asyncio.run(main(sys.argv[1], sys.argv[2] == "fast"))
"""


@pytest.mark.parametrize("fast", [False, True], ids=["full", "fast"])
async def test_sigkill_leaves_a_consistent_file(db: Path, fast: bool) -> None:
    rng = random.Random(7)
    for _ in range(4):
        child = python(APPEND_FOREVER, str(db), "fast" if fast else "full")
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL

    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with SQLiteStore(db) as store:
        runs = await store.list_runs(limit=1000)
        assert len(runs) == 20
        total = 0
        for run in runs:
            events = await store.read_events(run.run_id)
            total += len(events)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            statuses = [e for e in events if e.type == EventType.STATUS]
            snapshot = await store.load_snapshot(run.run_id)
            if not statuses:
                assert run.status == S.INITIALIZING
                assert snapshot is None
                continue
            last = statuses[-1]
            assert run.status == last.data["to"]
            assert snapshot == Snapshot(last.seq, {"n": last.seq, "to": last.data["to"]})
            # only a held step_started may follow the last committed status change
            assert [e.type for e in events[last.seq :]] in ([], [EventType.STEP_STARTED])
    assert total > 20 * 4  # the children got well past creating the runs


def test_wal_switch_waits_for_another_connection(tmp_path: Path) -> None:
    """SQLite refuses to switch a file to WAL while another connection holds it, and may do
    so at once, without the busy timeout (two processes opening a new file together):
    ``use_wal`` tries again until its own timeout."""
    from cadenza.store._sqlite_migrate import use_wal

    def holding(path: Path) -> sqlite3.Connection:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        return holder

    holder = holding(tmp_path / "new.db")
    opener = sqlite3.connect(tmp_path / "new.db", timeout=0.01, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        opener.execute("PRAGMA journal_mode = WAL")
    timer = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    timer.start()
    use_wal(opener, 5.0)
    timer.join()
    assert opener.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.close()
    opener.close()

    held = holding(tmp_path / "other.db")
    late = sqlite3.connect(tmp_path / "other.db", timeout=0.01, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(late, 0.05)  # gives up after its timeout
    held.close()
    late.close()
