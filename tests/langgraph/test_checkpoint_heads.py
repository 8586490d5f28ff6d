"""The SQLite saver's remembered run heads: a ``put`` that skips reading the thread's run must
append exactly what one that reads it would, whoever else wrote the file in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.types import INTERRUPT

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver, connect
from cadenza.observe.audit import verify
from cadenza.store._rows import event_rows
from cadenza.store.sqlite import SQLiteStore

S = WorkflowStatus


def put(s: SqliteSaver, thread: str, step: int, *, due: bool = True) -> Any:
    """A root checkpoint ``step`` (ids sort by step); ``due``: a node is left to run."""
    checkpoint = empty_checkpoint()
    checkpoint["id"] = f"{step:06d}"
    if due:
        checkpoint["channel_values"] = {"branch:to:node": None}
        checkpoint["channel_versions"] = {"branch:to:node": f"{step:016d}.0"}
    cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return s.put(cfg, checkpoint, {"source": "loop", "step": step}, {})


async def log_of(path: Path, thread: str) -> tuple[list[Event], S]:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        run = await store.get_run(RunId(thread))
        return await store.read_events(RunId(thread)), run.status
    finally:
        await store.close()


def steps(events: list[Event]) -> list[str]:
    return [e.data["checkpoint_id"] for e in events if e.type == EventType.STEP_COMPLETED]


async def test_two_savers_taking_turns_on_one_thread_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    with SqliteSaver.from_conn_string(str(path)) as a, SqliteSaver.from_conn_string(str(path)) as b:
        for step in range(12):
            put(a if step % 3 else b, "shared", step)  # each remembers a head the other moved
    events, status = await log_of(path, "shared")
    assert verify(events) is None
    assert steps(events) == [f"{s:06d}" for s in range(12)]
    assert status == S.RUNNING


async def test_savers_sharing_a_connection_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared-conn.db"
    conn = connect(str(path))
    try:
        a, b = SqliteSaver(conn), SqliteSaver(conn)
        for step in range(8):
            put(a if step % 2 else b, "t", step)
    finally:
        conn.close()
    events, _ = await log_of(path, "t")
    assert verify(events) is None
    assert steps(events) == [f"{s:06d}" for s in range(8)]


async def test_a_write_on_the_connection_between_puts_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    with SqliteSaver.from_conn_string(str(path)) as s:
        put(s, "t", 0)
        put(s, "t", 1)
        # someone appends to the run's log on the saver's own connection
        seq, prev = s.conn.execute(
            "SELECT seq, hash FROM events WHERE run_id = 't' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        note = Event(RunId("t"), seq + 1, EventType.STATUS, "", "", 0, {"note": "x"}, 1.0)
        [row], _ = event_rows(RunId("t"), seq, prev, [note])
        s.conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        put(s, "t", 2)
    events, _ = await log_of(path, "t")
    assert verify(events) is None
    assert steps(events) == ["000000", "000001", "000002"]


async def test_an_interrupt_written_before_its_checkpoint_is_not_missed(tmp_path: Path) -> None:
    path = tmp_path / "early.db"
    with SqliteSaver.from_conn_string(str(path)) as s:
        put(s, "t", 0)
        put(s, "t", 1)  # the head of "t" is remembered now
        early = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "000002"}}
        s.put_writes(early, [(INTERRUPT, {"question": "go?"})], "task-1")
        put(s, "t", 2)
    events, status = await log_of(path, "t")
    assert verify(events) is None
    assert status == S.WAITING_APPROVAL


async def test_an_interrupt_stored_before_the_saver_started_is_not_missed(tmp_path: Path) -> None:
    path = tmp_path / "before.db"
    early = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "000002"}}
    with SqliteSaver.from_conn_string(str(path)) as first:
        put(first, "t", 0)
        first.put_writes(early, [(INTERRUPT, {"question": "go?"})], "task-1")
    with SqliteSaver.from_conn_string(str(path)) as second:
        put(second, "t", 1)  # reads the head; must not remember it as free of interrupts
        put(second, "t", 2)
    events, status = await log_of(path, "t")
    assert verify(events) is None
    assert status == S.WAITING_APPROVAL


async def test_putting_an_older_checkpoint_again_reads_the_head(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    with SqliteSaver.from_conn_string(str(path)) as s:
        put(s, "t", 0)
        put(s, "t", 1)
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "000001"}}
        s.put_writes(cfg, [(INTERRUPT, {"question": "go?"})], "task-1")
        put(s, "t", 1)  # stored already, with an interrupt: the run waits
        put(s, "t", 3, due=False)
    events, status = await log_of(path, "t")
    assert verify(events) is None
    assert steps(events) == ["000000", "000001", "000001", "000003"]
    assert status == S.COMPLETED


async def test_a_failed_put_forgets_the_heads(tmp_path: Path) -> None:
    path = tmp_path / "failed.db"
    with SqliteSaver.from_conn_string(str(path)) as s:
        put(s, "t", 0)
        bad = empty_checkpoint()
        bad["id"] = "000001"
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        with pytest.raises(ValueError, match="JSON"):
            s.put(cfg, bad, {"source": "loop", "step": 1, "bad": float("nan")}, {})
        assert len(s._tips) == 0
        put(s, "t", 1)
    events, _ = await log_of(path, "t")
    assert verify(events) is None
    assert steps(events) == ["000000", "000001"]
