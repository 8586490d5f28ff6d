"""Circuit breakers and bulkheads shared by workers through PostgreSQL: failures seen by two
engines (each with its own connections, as two worker processes would have) add up to open
one breaker that both then respect; a bulkhead's limit holds across both; and the slots of a
worker that dies are not lost."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg

from cadenza import BreakerConfig, Bulkhead, Engine, Workflow, WorkflowStatus
from cadenza.store.postgres import PostgresStore

from .helpers import until

CONFIG = BreakerConfig(window=4, minimum_calls=4, failure_rate=0.5, cool_down=3600, probes=1)


async def test_a_breaker_opens_on_the_failures_of_two_workers_and_both_respect_it(
    dsn: str,
) -> None:
    calls: list[str] = []
    wf = Workflow("guarded")

    async def charge(state: dict) -> dict:
        calls.append("charge")
        raise ConnectionError("payments are down")

    wf.task(charge, breaker="payments")

    async with (
        Engine(PostgresStore(dsn), breakers={"payments": CONFIG}) as one,
        Engine(PostgresStore(dsn), breakers={"payments": CONFIG}) as two,
    ):
        for engine in (one, two, one, two):  # two failures each: neither alone would open it
            result = await engine.run(wf, {})
            assert result.status is WorkflowStatus.FAILED and "payments are down" in (
                result.error or ""
            )
        assert len(calls) == 4
        opened_by = await two.store.read_events(result.run_id)
        assert [(e.data["from"], e.data["to"]) for e in opened_by if e.type == "breaker"] == [
            ("closed", "open")
        ]
        for engine in (one, two):  # both fail fast now, without calling the dependency
            fast = await engine.run(wf, {})
            assert fast.status is WorkflowStatus.FAILED
            assert "circuit 'payments' is open" in (fast.error or "")
            assert engine.breakers.get("payments").state == "open"
        assert len(calls) == 4
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT state, failures FROM breakers WHERE name = 'payments'"
        ).fetchone()
    assert row is not None and row[0] == "open"


async def test_a_bulkhead_limit_holds_across_workers(dsn: str) -> None:
    inside, peak = 0, 0
    wf = Workflow("limited")

    async def search(state: dict) -> dict:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.02)
        inside -= 1
        return {"ok": True}

    wf.task(search, bulkhead=Bulkhead("search-api", 2))

    async with Engine(PostgresStore(dsn)) as one, Engine(PostgresStore(dsn)) as two:
        results = await asyncio.gather(
            *(engine.run(wf, {}) for engine in (one, two) for _ in range(12))
        )
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        assert peak == 2  # each engine alone would have let 2 in: 4 at once
        assert one.bulkheads.in_use("search-api") == two.bulkheads.in_use("search-api") == 0


HOLDER = """
import sys, time, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    key = sys.argv[2]
    for slot in (0, 1):
        taken = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s)", (key, slot))
        assert taken.fetchone()[0]
    print("holding", flush=True)
    time.sleep(3600)
"""


async def test_the_slots_of_a_worker_that_dies_are_freed(dsn: str) -> None:
    wf = Workflow("after-death")

    async def post(state: dict) -> dict:
        return {"posted": True}

    wf.task(post, bulkhead=Bulkhead("ledger", 2))

    async with Engine(PostgresStore(dsn)) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        registry = store.bulkheads()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, dsn, registry._key("ledger")],
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert (await asyncio.to_thread(holder.stdout.readline)).strip() == b"holding"
            assert await registry.in_use_everywhere("ledger") == 2
            blocked = asyncio.create_task(engine.run(wf, {}))
            await asyncio.sleep(0.3)
            assert not blocked.done()  # both slots are the other worker's
        finally:
            holder.kill()  # dies without a word: its connection, and its slots, go with it
            holder.wait()
        result = await asyncio.wait_for(blocked, 60)
        assert result.ok
        await until(lambda: _none_held(registry), "every slot to be free")


async def _none_held(registry: object) -> bool:
    return await registry.in_use_everywhere("ledger") == 0  # type: ignore[attr-defined]
