"""Fencing inside one engine: a run whose lease another worker took can no longer append, and
the engine abandons it (its result says why) instead of failing or retrying it."""

from __future__ import annotations

import asyncio
import time

from cadenza import Engine, Workflow, WorkflowStatus
from cadenza.core.events import EventType
from cadenza.store.postgres import PostgresStore

from .helpers import until


async def test_an_append_after_a_takeover_is_refused_and_the_run_abandoned(dsn: str) -> None:
    release = asyncio.Event()
    calls: list[str] = []
    wf = Workflow("fenced-here")

    @wf.step
    async def first(state: dict) -> dict:
        calls.append("first")
        return {"first": True}

    @wf.step
    async def second(state: dict) -> dict:
        calls.append("second")
        await release.wait()
        return {"second": "stale"}

    async with Engine(PostgresStore(dsn), lease_seconds=60) as stale, PostgresStore(dsn) as other:
        run_id = await stale.start(wf, {})
        await until(lambda: _value("second" in calls), "the second step to start")
        epoch = await other.claim(run_id, "the-new-owner", lease_until=time.time() + 60, steal=True)
        assert epoch == 2
        before = await other.read_events(run_id)
        release.set()
        result = await stale.wait(run_id)
        assert "stale" in (result.error or "") and "another worker" in (result.error or "")
        assert await other.read_events(run_id) == before  # nothing of the stale one stored
        record = await other.get_run(run_id)
        assert (record.owner, record.epoch, record.status) == (
            "the-new-owner",
            2,
            WorkflowStatus.RUNNING,
        )
        assert not [e for e in before if e.type is EventType.STEP_COMPLETED and e.path == "second"]


async def _value(value: object) -> object:
    return value
