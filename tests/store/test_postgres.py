"""PostgresStore beyond the shared contract: migrations under concurrent openers, a real
workflow on the engine, and many runs appending at once. Each test uses its own schema, dropped
afterwards; everything is skipped when PostgreSQL cannot be reached."""

from __future__ import annotations

import asyncio
import operator
import os
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest
from pydantic_core import to_json

pytest.importorskip("psycopg_pool", reason="psycopg[pool] is not installed")

import psycopg
from psycopg import sql

from cadenza import Engine, Workflow, WorkflowStatus
from cadenza.core.errors import ConflictError, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.observe.audit import verify
from cadenza.store.base import RunRecord
from cadenza.store.migrate import load_migrations
from cadenza.store.postgres import PostgresStore

DSN = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"
S = WorkflowStatus


async def _reachable() -> str | None:
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, connect_timeout=3)
    except psycopg.Error as exc:
        return str(exc)
    await conn.close()
    return None


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    problem = await _reachable()
    if problem is not None:
        pytest.skip(f"PostgreSQL not available at {DSN}: {problem}")
    name = f"cadenza_test_{uuid.uuid4().hex[:12]}"
    yield name
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(DSN, schema=schema, max_size=8) as opened:
        yield opened


def event(run_id: str, seq: int, type: EventType = EventType.STEP_COMPLETED, **kw: Any) -> Event:
    return Event(run_id=RunId(run_id), seq=seq, type=type, **kw)


async def start(store: PostgresStore, run_id: str) -> RunId:
    record = RunRecord(run_id=RunId(run_id), workflow="wf", version="v1")
    await store.create_run(record, [event(run_id, 1, EventType.RUN_CREATED)])
    return RunId(run_id)


async def schema_versions(schema: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        query = sql.SQL("SELECT version, name FROM {}.schema_version ORDER BY version").format(
            sql.Identifier(schema)
        )
        return [(v, n) for v, n in await (await conn.execute(query)).fetchall()]


# -- migrations ---------------------------------------------------------------------------------


async def test_concurrent_openers_apply_each_migration_once(schema: str) -> None:
    stores = [PostgresStore(DSN, schema=schema, max_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        expected = [(m.version, m.name) for m in load_migrations("postgres")]
        assert await schema_versions(schema) == expected
        await start(stores[0], "r1")
        assert (await stores[3].get_run(RunId("r1"))).workflow == "wf"
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    # opening again (and twice) is a no-op
    async with PostgresStore(DSN, schema=schema) as again:
        await again.open()
        assert (await again.get_run(RunId("r1"))).workflow == "wf"
    assert await schema_versions(schema) == expected


async def test_json_is_stored_verbatim_not_as_jsonb(store: PostgresStore, schema: str) -> None:
    run_id = await start(store, "r1")
    data = {"z": 1, "a": 1.0, "m": 1e16, "s": "Grüße"}
    await store.append(run_id, [event("r1", 2, data=data)])
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        query = sql.SQL("SELECT data::text FROM {}.events WHERE seq = 2").format(
            sql.Identifier(schema)
        )
        row = await (await conn.execute(query)).fetchone()
    assert row is not None and row[0] == to_json(data).decode()  # jsonb would sort the keys
    assert verify(await store.read_events(run_id)) is None


async def test_unreachable_server_is_a_clear_store_error() -> None:
    bad = PostgresStore("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=2)
    with pytest.raises(StoreError, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1"):
        await bad.open()


async def test_unopened_store_refuses() -> None:
    with pytest.raises(StoreError, match="not open"):
        await PostgresStore(DSN).get_run(RunId("r1"))


# -- the engine ---------------------------------------------------------------------------------


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    total: Annotated[int, operator.add]


async def test_a_workflow_runs_on_postgres_and_its_log_verifies(store: PostgresStore) -> None:
    wf = Workflow("pg-flow", state=State)

    @wf.step
    def first(state: State) -> State:
        return {"log": ["first"], "total": 1}

    @wf.step
    async def second(state: State) -> State:
        await asyncio.sleep(0)
        return {"log": ["second"], "total": 1}

    async def left(state: State) -> State:
        await asyncio.sleep(0.01)
        return {"log": ["left"], "total": 1}

    def right(state: State) -> State:
        return {"log": ["right"], "total": 1}

    wf.parallel("fan", [left, right])

    @wf.step
    def third(state: State) -> State:
        return {"log": ["third"], "total": 1}

    async with Engine(store) as engine:  # the engine closes the store on exit
        result = await engine.run(wf, {"log": [], "total": 0})
        assert result.ok, result.error
        assert result.state["log"] == ["first", "second", "left", "right", "third"]
        assert result.state["total"] == 5

        run = await store.get_run(result.run_id)
        assert run.status == S.COMPLETED
        events = await store.read_events(result.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert all(e.hash for e in events)
        assert verify(events) is None
        assert [r.run_id for r in await store.list_runs(workflow="pg-flow")] == [result.run_id]


# -- concurrency --------------------------------------------------------------------------------


async def test_racing_appends_to_one_run_from_two_stores(store: PostgresStore, schema: str) -> None:
    """Two processes' stores appending the same seq: the row lock serialises them, one wins."""
    run_id = await start(store, "r1")
    async with PostgresStore(DSN, schema=schema) as other:
        for seq in range(2, 22):
            outcomes = await asyncio.gather(
                store.append(run_id, [event("r1", seq, data={"by": "a"})]),
                other.append(run_id, [event("r1", seq, data={"by": "b"})]),
                return_exceptions=True,
            )
            assert sum(o is None for o in outcomes) == 1
            assert sum(isinstance(o, ConflictError) for o in outcomes) == 1
    events = await store.read_events(run_id)
    assert [e.seq for e in events] == list(range(1, 22))
    assert verify(events) is None


async def test_values_postgres_cannot_take_are_store_errors(store: PostgresStore) -> None:
    run_id = await start(store, "r1")
    with pytest.raises(StoreError):
        await store.append(run_id, [event("r1", 2, path="bad\x00path")])
    with pytest.raises(StoreError, match="JSON"):
        await store.append(run_id, [event("r1", 2, data={"x": object()})])
    await store.append(run_id, [event("r1", 2)])  # nothing of the refused appends was stored
    assert verify(await store.read_events(run_id)) is None
