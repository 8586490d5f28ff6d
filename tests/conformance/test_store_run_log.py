"""The run log (``store.run_log``, :mod:`cadenza.store.runlog`), checked against every store: its
operations, run in a transaction of the caller's, keep runs exactly as the store keeps them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import verify
from cadenza.store.base import RunRecord, Store
from cadenza.store.memory import MemoryStore
from cadenza.store.runlog import Op, RunHead, RunLog, adrive, complete, drive
from cadenza.store.sqlite import SQLiteStore

S = WorkflowStatus
T = TypeVar("T")
T0 = 1_700_000_000.0


def ev(run_id: str, seq: int, type: EventType = EventType.STEP_COMPLETED, **data: Any) -> Event:
    return Event(RunId(run_id), seq, type, f"step {seq}", "", 0, data, T0 + seq)


async def transaction(store: Store, make: Callable[[RunLog], Op[T]]) -> T:
    """Run the operation ``make`` builds in one transaction on a connection of our own, as a
    checkpointer does (the memory store needs none)."""
    op = make(store.run_log)
    if isinstance(store, MemoryStore):
        return complete(op)
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = drive(conn.cursor(), op)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            conn.close()
    import psycopg
    from psycopg import sql

    from cadenza.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    async with await psycopg.AsyncConnection.connect(store.dsn, autocommit=True) as aconn:
        if store.schema is not None:
            await aconn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(store.schema))
            )
        async with aconn.transaction():
            return await adrive(aconn.cursor(), op)


def record(run_id: str, **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {"workflow": "wf", "version": "v1", "status": S.RUNNING, **changes}
    return RunRecord(run_id=RunId(run_id), created_at=T0, updated_at=T0, **fields)


async def test_a_run_created_and_appended_through_the_run_log_is_a_run_like_any(
    store: Store,
) -> None:
    created: RunHead | None = await transaction(
        store, lambda log: log.create(record("r"), [ev("r", 1, EventType.RUN_CREATED)])
    )
    assert created is not None
    assert (created.exists, created.workflow, created.version, created.status, created.seq) == (
        True,
        "wf",
        "v1",
        S.RUNNING,
        1,
    )

    def step(log: RunLog) -> Op[RunHead]:
        head = yield from log.head(RunId("r"))
        assert (head.exists, head.seq, head.ts) == (True, 1, T0 + 1)
        return (yield from log.append(head, [ev("r", 2, answer=42), ev("r", 3)]))

    head: RunHead = await transaction(store, step)
    assert (head.seq, head.status) == (3, S.RUNNING)

    def fail(log: RunLog) -> Op[RunHead]:
        head = yield from log.head(RunId("r"))
        status = ev("r", 4, EventType.STATUS, **{"from": "RUNNING", "to": "FAILED"})
        return (yield from log.append(head, [status], status=S.FAILED, error="boom"))

    head = await transaction(store, fail)
    assert (head.seq, head.status) == (4, S.FAILED)

    run = await store.get_run(RunId("r"))
    assert (run.status, run.error, run.workflow) == (S.FAILED, "boom", "wf")
    assert [r.run_id for r in await store.list_runs(status=[S.FAILED])] == ["r"]
    events = await store.read_events(RunId("r"))
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[1].data == {"answer": 42}
    assert verify(events) is None
    read: list[Event] = await transaction(store, lambda log: log.read(RunId("r"), after_seq=2))
    assert read == events[2:] and [e.hash for e in read] == [e.hash for e in events[2:]]


async def test_the_store_goes_on_with_a_log_the_run_log_wrote(store: Store) -> None:
    await transaction(store, lambda log: log.create(record("r"), [ev("r", 1)]))
    await store.append(RunId("r"), [ev("r", 2)], status=S.COMPLETED)
    events = await store.read_events(RunId("r"))
    assert [e.seq for e in events] == [1, 2] and verify(events) is None
    head: RunHead = await transaction(store, lambda log: log.head(RunId("r")))
    assert (head.seq, head.status) == (2, S.COMPLETED)


async def test_creating_a_taken_id_writes_nothing(store: Store) -> None:
    await store.create_run(record("taken"), [ev("taken", 1, EventType.RUN_CREATED)])
    again: RunHead | None = await transaction(
        store, lambda log: log.create(record("taken", workflow="other"), [ev("taken", 1)])
    )
    assert again is None
    assert (await store.get_run(RunId("taken"))).workflow == "wf"
    assert len(await store.read_events(RunId("taken"))) == 1


async def test_events_that_do_not_continue_the_log_are_refused(store: Store) -> None:
    await transaction(store, lambda log: log.create(record("r"), [ev("r", 1)]))

    def skip(log: RunLog) -> Op[RunHead]:
        head = yield from log.head(RunId("r"))
        return (yield from log.append(head, [ev("r", 3)], status=S.COMPLETED))

    with pytest.raises(ConflictError):
        await transaction(store, skip)
    assert [e.seq for e in await store.read_events(RunId("r"))] == [1]
    assert (await store.get_run(RunId("r"))).status == S.RUNNING


async def test_an_unknown_run_has_an_empty_head_and_no_events(store: Store) -> None:
    head: RunHead = await transaction(store, lambda log: log.head(RunId("nobody")))
    assert head == RunHead(RunId("nobody"))
    with pytest.raises(RunNotFound):
        await transaction(store, lambda log: log.read(RunId("nobody")))
    with pytest.raises(RunNotFound):
        await transaction(store, lambda log: log.append(head, [ev("nobody", 1)]))


async def test_a_terminal_status_clears_wake_at(store: Store) -> None:
    await transaction(store, lambda log: log.create(record("r", wake_at=T0), [ev("r", 1)]))

    def finish(log: RunLog) -> Op[RunHead]:
        head = yield from log.head(RunId("r"))
        return (yield from log.append(head, [], status=S.COMPLETED, error=""))

    await transaction(store, finish)
    run = await store.get_run(RunId("r"))
    assert (run.status, run.wake_at) == (S.COMPLETED, None)


@pytest.mark.parametrize(
    "kind",
    [EventType.APPROVAL_REQUESTED, EventType.APPROVAL_DECISION, EventType.APPROVAL_ESCALATED],
)
async def test_approval_events_go_through_the_store(store: Store, kind: EventType) -> None:
    with pytest.raises(StoreError, match=r"Store\.append"):
        await transaction(store, lambda log: log.create(record("r"), [ev("r", 1, kind)]))
    with pytest.raises(RunNotFound):
        await store.get_run(RunId("r"))
