"""Work distribution on PostgreSQL: due runs are claimed with ``FOR UPDATE SKIP LOCKED`` by
many claimers at once (each its own connection pool, as separate workers would be), and no
run is ever handed to two of them; the group commit shares transactions between runs while a
stale run's append fails alone."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import psycopg
import pytest

from cadenza.core.errors import ConflictError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.store import _pg_writes
from cadenza.store.base import LeaseLost, RunRecord
from cadenza.store.postgres import PostgresStore


def _event(run_id: str, seq: int, **kw: Any) -> Event:
    return Event(RunId(run_id), seq, EventType.STEP_COMPLETED, **kw)


async def _queue(store: PostgresStore, count: int, **fields: Any) -> list[RunId]:
    now = time.time()
    ids = [RunId(f"run-{i:04d}") for i in range(count)]
    await asyncio.gather(
        *(
            store.create_run(
                RunRecord(run_id=r, workflow="wf", version="v1", wake_at=now - 1, **fields),
                [Event(r, 1, EventType.RUN_CREATED)],
            )
            for r in ids
        )
    )
    return ids


async def test_many_concurrent_claimers_never_share_a_run(dsn: str) -> None:
    stores = [PostgresStore(dsn, max_size=3) for _ in range(8)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ids = await _queue(stores[0], 600)
        rng = random.Random(7)

        async def claimer(store: PostgresStore, name: str) -> list[tuple[RunId, str, int]]:
            got = []
            while True:
                batch = await store.claim_due(
                    name, lease_until=time.time() + 60, limit=rng.randint(1, 12)
                )
                if not batch:
                    return got
                got += [(r.run_id, r.owner or "", r.epoch) for r in batch]

        hauls = await asyncio.gather(
            *(claimer(store, f"worker-{i}.{j}") for i, store in enumerate(stores) for j in range(3))
        )
        taken = [item for haul in hauls for item in haul]
        assert sorted(run_id for run_id, _, _ in taken) == ids  # each exactly once
        assert {epoch for _, _, epoch in taken} == {1}
        assert sum(1 for haul in hauls if haul) > 8  # the work really was spread
        for run_id, owner, _ in rng.sample(taken, 50):
            assert (await stores[1].get_run(run_id)).owner == owner
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_claims_race_with_lease_expiry_and_renewal(dsn: str) -> None:
    """Expired leases are taken once each even while their owner renews the others."""
    async with PostgresStore(dsn) as first, PostgresStore(dsn) as second:
        ids = await _queue(first, 40)
        held = await first.claim_due("old", lease_until=time.time() + 0.5, limit=40)
        assert len(held) == 40
        await asyncio.sleep(0.6)  # every lease expired; "old" renews half of them too late
        renewed, taken = await asyncio.gather(
            first.renew(
                "old", {r.run_id: r.epoch for r in held[:20]}, lease_until=time.time() + 60
            ),
            second.claim_due("new", lease_until=time.time() + 60, limit=40),
        )
        taken_ids = {r.run_id for r in taken}
        assert not renewed & taken_ids  # a run is held by exactly one of them
        assert renewed | taken_ids == set(ids)
        for record in taken:
            assert record.epoch == 2


async def test_group_commit_shares_transactions_between_runs(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = _pg_writes._commit

    async def counting(conn: Any, writes: list[Any], channel: str) -> Any:
        batches.append(len(writes))
        return await real(conn, writes, channel)

    monkeypatch.setattr(_pg_writes, "_commit", counting)
    async with PostgresStore(dsn, writers=1) as store:
        ids = await _queue(store, 300)
        epochs = {
            r.run_id: r.epoch
            for r in await store.claim_due("w", lease_until=time.time() + 60, limit=300)
        }
        stale = ids[7]
        assert await store.claim(stale, "thief", lease_until=time.time() + 60, steal=True)
        batches.clear()

        async def drive(run_id: RunId) -> str:
            try:
                for seq in range(2, 7):
                    await store.append(run_id, [_event(run_id, seq)], epoch=epochs[run_id])
            except LeaseLost:
                return "lost"
            return "ok"

        outcomes = await asyncio.gather(*(drive(r) for r in ids))
        assert outcomes.count("lost") == 1 and outcomes[7] == "lost"
        assert sum(batches) >= 299 * 5
        assert len(batches) < 299 * 5 / 10  # shared transactions, many appends each
        assert [e.seq for e in await store.read_events(stale)] == [1]
        assert [e.seq for e in await store.read_events(ids[0])] == [1, 2, 3, 4, 5, 6]


async def test_an_append_is_committed_when_it_returns(dsn: str) -> None:
    async with PostgresStore(dsn) as store:
        (run_id,) = await _queue(store, 1)
        with psycopg.connect(dsn, autocommit=True) as observer:
            for seq in range(2, 12):
                await store.append(run_id, [_event(run_id, seq)])
                row = observer.execute(
                    "SELECT max(seq) FROM events WHERE run_id = %s", (run_id,)
                ).fetchone()
                assert row == (seq,)


async def test_a_refused_statement_fails_only_its_own_append(dsn: str) -> None:
    async with PostgresStore(dsn, writers=1) as store:
        ids = await _queue(store, 5)
        results = await asyncio.gather(
            *(
                store.append(r, [_event(r, 2, path="bad\x00" if i == 2 else "ok")])
                for i, r in enumerate(ids)
            ),
            return_exceptions=True,
        )
        assert [isinstance(x, Exception) for x in results] == [False, False, True, False, False]
        assert not isinstance(results[2], ConflictError)
        assert [e.seq for e in await store.read_events(ids[2])] == [1]
        assert [e.seq for e in await store.read_events(ids[3])] == [1, 2]
