"""The Store contract (``cadenza.store.base``), checked against every store implementation."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from cadenza.core.errors import ConflictError, RunNotFound, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import GENESIS, chain_hash, verify
from cadenza.store.base import RunRecord, Snapshot, Store

if TYPE_CHECKING:
    from conftest import StoreHarness  # tests/conformance/conftest.py

S = WorkflowStatus
T0 = 1_700_000_000.0


def run_record(run_id: str, **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {"workflow": "wf", "version": "v1", **changes}
    return RunRecord(run_id=RunId(run_id), **fields)


def event(run_id: str, seq: int, type: EventType = EventType.STEP_COMPLETED, **kw: Any) -> Event:
    return Event(run_id=RunId(run_id), seq=seq, type=type, **kw)


async def start(store: Store, run_id: str, **changes: Any) -> RunId:
    """Create a run whose log holds its ``run_created`` event (seq 1)."""
    await store.create_run(run_record(run_id, **changes), [event(run_id, 1, EventType.RUN_CREATED)])
    return RunId(run_id)


async def seqs(store: Store, run_id: RunId) -> list[int]:
    return [e.seq for e in await store.read_events(run_id)]


def test_implements_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# -- runs ---------------------------------------------------------------------------------------


async def test_create_and_get_round_trips_every_field(store: Store) -> None:
    record = RunRecord(
        run_id=RunId("r1"),
        workflow="essay",
        version="abc123",
        status=S.RUNNING,
        target="pkg.flows:essay",
        input={"topic": "Ærøskøbing ☕", "n": 3, "tags": ["a", "b"], "opts": {"x": None}},
        error="earlier failure",
        created_at=T0,
        updated_at=T0 + 1,
        deadline=T0 + 3600,
        owner="worker-1",
        lease_until=T0 + 30,
        parent_run_id=RunId("parent"),
        queue="billing",
        epoch=4,
        wake_at=T0 + 5,
    )
    await store.create_run(record, [event("r1", 1, EventType.RUN_CREATED)])
    assert await store.get_run(RunId("r1")) == record


async def test_create_existing_run_conflicts(store: Store) -> None:
    await start(store, "r1", workflow="first")
    with pytest.raises(ConflictError):
        await store.create_run(run_record("r1", workflow="second"), [])
    assert (await store.get_run(RunId("r1"))).workflow == "first"


async def test_create_with_misnumbered_events_stores_nothing(store: Store) -> None:
    with pytest.raises(ConflictError):
        await store.create_run(run_record("r1"), [event("r1", 2, EventType.RUN_CREATED)])
    with pytest.raises(RunNotFound):
        await store.get_run(RunId("r1"))


async def test_list_runs_newest_first(store: Store) -> None:
    for i, run_id in enumerate(["old", "newest", "middle"]):
        created = {"old": T0, "middle": T0 + 10, "newest": T0 + 20}[run_id]
        await start(store, run_id, created_at=created, updated_at=created + i)
    assert [r.run_id for r in await store.list_runs()] == ["newest", "middle", "old"]


async def test_list_runs_filters_and_limit(store: Store) -> None:
    runs = [
        ("a", "essay", S.RUNNING),
        ("b", "essay", S.COMPLETED),
        ("c", "review", S.RUNNING),
        ("d", "review", S.FAILED),
        ("e", "essay", S.PAUSED),
    ]
    for i, (run_id, workflow, status) in enumerate(runs):
        await start(store, run_id, workflow=workflow, status=status, created_at=T0 + i)

    async def ids(**filters: Any) -> list[str]:
        return [r.run_id for r in await store.list_runs(**filters)]

    assert await ids() == ["e", "d", "c", "b", "a"]
    assert await ids(status={S.RUNNING}) == ["c", "a"]
    assert await ids(status=[S.RUNNING, S.FAILED, S.COMPLETED]) == ["d", "c", "b", "a"]
    assert await ids(status=()) == []
    assert await ids(workflow="essay") == ["e", "b", "a"]
    assert await ids(workflow="nope") == []
    assert await ids(workflow="review", status=[S.RUNNING]) == ["c"]
    assert await ids(limit=2) == ["e", "d"]
    assert await ids(workflow="essay", limit=1) == ["e"]


# -- appending ----------------------------------------------------------------------------------


async def test_events_round_trip_in_order(store: Store) -> None:
    run_id = await start(store, "r1")
    written = [
        event("r1", 2, EventType.STEP_STARTED, path="drafts[1]/write", scope="drafts[1]", ts=T0),
        event(
            "r1",
            3,
            EventType.STEP_COMPLETED,
            path="drafts[1]/write",
            scope="drafts[1]",
            attempt=2,
            data={"update": {"text": "naïve café — 東京", "score": 0.5}, "route": None},
            ts=T0 + 0.25,
        ),
    ]
    await store.append(run_id, written[:1])
    await store.append(run_id, written[1:])
    await store.append(run_id, [event("r1", 4), event("r1", 5), event("r1", 6)])
    events = await store.read_events(run_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[1:3] == written


async def test_read_events_after_seq(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", seq) for seq in range(2, 6)])
    assert [e.seq for e in await store.read_events(run_id, after_seq=3)] == [4, 5]
    assert await store.read_events(run_id, after_seq=5) == []


async def test_gap_is_refused_and_nothing_stored(store: Store) -> None:
    run_id = await start(store, "r1")
    with pytest.raises(ConflictError):
        await store.append(run_id, [event("r1", 3)])
    assert await seqs(store, run_id) == [1]
    await store.append(run_id, [event("r1", 2)])  # the right seq still goes through
    assert await seqs(store, run_id) == [1, 2]


async def test_taken_seq_is_refused(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", 2, data={"v": "first"})])
    with pytest.raises(ConflictError):
        await store.append(run_id, [event("r1", 2, data={"v": "second"})])
    events = await store.read_events(run_id)
    assert [e.seq for e in events] == [1, 2]
    assert events[1].data == {"v": "first"}


async def test_concurrent_writers_of_one_seq_one_wins(store: Store) -> None:
    run_id = await start(store, "r1")
    results = await asyncio.gather(
        store.append(run_id, [event("r1", 2, data={"w": 1})]),
        store.append(run_id, [event("r1", 2, data={"w": 2})]),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ConflictError) for r in results) == 1
    assert sum(r is None for r in results) == 1
    assert await seqs(store, run_id) == [1, 2]


async def test_refused_append_is_atomic(store: Store) -> None:
    run_id = await start(store, "r1", status=S.RUNNING)
    before = await store.get_run(run_id)
    with pytest.raises(ConflictError):
        await store.append(
            run_id,
            [event("r1", 2), event("r1", 4)],  # second event leaves a gap
            status=S.FAILED,
            error="boom",
            snapshot=Snapshot(seq=4, state={"x": 1}),
        )
    assert await seqs(store, run_id) == [1]
    assert await store.get_run(run_id) == before
    assert await store.load_snapshot(run_id) is None


async def test_event_of_another_run_is_refused(store: Store) -> None:
    run_id = await start(store, "r1")
    await start(store, "r2")
    with pytest.raises(StoreError):
        await store.append(run_id, [event("r2", 2)])
    assert await seqs(store, run_id) == [1]
    assert await seqs(store, RunId("r2")) == [1]


async def test_status_and_error_are_materialised(store: Store) -> None:
    run_id = await start(store, "r1", created_at=T0, updated_at=T0)
    await store.append(run_id, [event("r1", 2, EventType.STATUS)], status=S.RUNNING)
    run = await store.get_run(run_id)
    assert (run.status, run.error) == (S.RUNNING, None)
    assert run.updated_at > T0

    await store.append(run_id, [event("r1", 3, EventType.STATUS)], status=S.FAILED, error="boom")
    run = await store.get_run(run_id)
    assert (run.status, run.error) == (S.FAILED, "boom")
    assert run.created_at == T0

    await store.append(run_id, [event("r1", 4)])  # neither given: both kept
    run = await store.get_run(run_id)
    assert (run.status, run.error) == (S.FAILED, "boom")


async def test_status_change_without_events(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [], status=S.CANCELLED)
    assert (await store.get_run(run_id)).status == S.CANCELLED
    assert await seqs(store, run_id) == [1]


async def test_snapshots_round_trip(store: Store) -> None:
    run_id = await start(store, "r1")
    assert await store.load_snapshot(run_id) is None
    state = {
        "text": "Grüße, 世界 🎉",
        "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
        "count": 7,
    }
    buffers = {"drafts": [{"i": 0, "text": "é"}, {"i": 1, "text": "ø"}]}
    await store.append(run_id, [event("r1", 2)], snapshot=Snapshot(2, state, buffers))
    assert await store.load_snapshot(run_id) == Snapshot(2, state, buffers)

    await store.append(run_id, [event("r1", 3)], snapshot=Snapshot(3, {"count": 8}))
    assert await store.load_snapshot(run_id) == Snapshot(3, {"count": 8}, {})


async def test_loaded_snapshot_is_a_copy(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", 2)], snapshot=Snapshot(2, {"items": [1]}))
    loaded = await store.load_snapshot(run_id)
    assert loaded is not None
    loaded.state["items"].append(2)
    assert await store.load_snapshot(run_id) == Snapshot(2, {"items": [1]})


async def test_unknown_run_raises_run_not_found(store: Store) -> None:
    missing = RunId("missing")
    with pytest.raises(RunNotFound):
        await store.get_run(missing)
    with pytest.raises(RunNotFound):
        await store.read_events(missing)
    with pytest.raises(RunNotFound):
        await store.load_snapshot(missing)
    with pytest.raises(RunNotFound):
        await store.append(missing, [event("missing", 1)])
    with pytest.raises(RunNotFound):
        await store.claim(missing, "w", lease_until=time.time() + 30)
    with pytest.raises(RunNotFound):
        await store.release(missing, "w")


async def test_run_without_events(store: Store) -> None:
    await store.create_run(run_record("r1"), [])
    assert await store.read_events(RunId("r1")) == []
    await store.append(RunId("r1"), [event("r1", 1)])
    assert await seqs(store, RunId("r1")) == [1]


async def test_held_events_appear_with_the_next_durable_append(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.append(run_id, [event("r1", 2, EventType.STEP_STARTED)], durable=False)
    await store.append(run_id, [event("r1", 3, EventType.STEP_STARTED)], durable=False)
    await store.append(run_id, [event("r1", 4)], status=S.RUNNING)
    events = await store.read_events(run_id)
    assert [(e.seq, e.type) for e in events] == [
        (1, EventType.RUN_CREATED),
        (2, EventType.STEP_STARTED),
        (3, EventType.STEP_STARTED),
        (4, EventType.STEP_COMPLETED),
    ]


async def test_concurrent_appends_from_many_runs(store: Store) -> None:
    run_ids = [await start(store, f"run-{i:03d}") for i in range(200)]

    async def drive(run_id: RunId) -> None:
        for seq in range(2, 7):
            done = seq == 6
            await store.append(
                run_id,
                [event(run_id, seq, data={"seq": seq})],
                status=S.COMPLETED if done else S.RUNNING,
                snapshot=Snapshot(seq, {"seq": seq}) if done else None,
            )

    await asyncio.gather(*(drive(run_id) for run_id in run_ids))
    for run_id in run_ids:
        events = await store.read_events(run_id)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
        assert [e.data.get("seq") for e in events[1:]] == [2, 3, 4, 5, 6]
        assert verify(events) is None
        assert await store.load_snapshot(run_id) == Snapshot(6, {"seq": 6})
        assert (await store.get_run(run_id)).status == S.COMPLETED
        assert await store.load_snapshot(run_id) == Snapshot(6, {"seq": 6})
    assert len(await store.list_runs(status={S.COMPLETED}, limit=1000)) == 200


# -- audit trail --------------------------------------------------------------------------------


async def test_appended_events_carry_a_verifying_hash_chain(
    store: Store, store_harness: StoreHarness
) -> None:
    """The store assigns each event ``prev_hash`` and ``hash`` (``cadenza.observe.audit``) when
    it appends it, over the event as stored, and ``read_events`` returns them: the same chain on
    every store, continued across refused appends, held events and (durable stores) a reopen."""
    run_id = await start(store, "r1")
    written = [
        (await store.read_events(run_id))[0],
        event("r1", 2, data={"text": "Grüße 東京", "n": [1, 2.5, None], "b": {"z": 0, "a": True}}),
        event("r1", 3, EventType.STEP_STARTED, path="drafts[1]/write", scope="drafts[1]"),
        event("r1", 4, EventType.STATUS, data={"from": "RUNNING", "to": "PAUSED"}, ts=T0),
        event("r1", 5, attempt=3),
    ]
    await store.append(run_id, written[1:2])
    with pytest.raises(ConflictError):
        await store.append(run_id, [event("r1", 4)])
    await store.append(run_id, written[2:3], durable=False)
    await store.append(run_id, written[3:], status=S.PAUSED)

    events = await store.read_events(run_id)
    assert events == written
    hashes, prev = [], GENESIS
    for e in written:
        prev = chain_hash(prev, e)
        hashes.append(prev)
    assert [e.hash for e in events] == hashes
    assert [e.prev_hash for e in events] == [GENESIS, *hashes[:-1]]
    assert verify(events) is None
    assert [e.hash for e in await store.read_events(run_id, after_seq=3)] == hashes[3:]

    if store_harness.durable:  # a new store object continues the chain from the stored log
        store = await store_harness.reopen()
        await store.append(run_id, [event("r1", 6)])
        events = await store.read_events(run_id)
        assert [e.hash for e in events[:5]] == hashes
        assert events[5].prev_hash == hashes[-1]
        assert verify(events) is None


# -- leases -------------------------------------------------------------------------------------


async def test_claim_unowned_run(store: Store) -> None:
    run_id = await start(store, "r1")
    lease = time.time() + 30
    assert await store.claim(run_id, "w1", lease_until=lease)
    run = await store.get_run(run_id)
    assert (run.owner, run.lease_until) == ("w1", lease)


async def test_same_owner_renews(store: Store) -> None:
    run_id = await start(store, "r1")
    assert await store.claim(run_id, "w1", lease_until=time.time() + 30)
    later = time.time() + 60
    assert await store.claim(run_id, "w1", lease_until=later)
    assert (await store.get_run(run_id)).lease_until == later


async def test_other_owner_is_refused_while_the_lease_holds(store: Store) -> None:
    run_id = await start(store, "r1")
    lease = time.time() + 30
    assert await store.claim(run_id, "w1", lease_until=lease)
    assert not await store.claim(run_id, "w2", lease_until=time.time() + 60)
    run = await store.get_run(run_id)
    assert (run.owner, run.lease_until) == ("w1", lease)


async def test_expired_lease_is_taken(store: Store) -> None:
    run_id = await start(store, "r1")
    assert await store.claim(run_id, "w1", lease_until=time.time() - 1)
    assert await store.claim(run_id, "w2", lease_until=time.time() + 30)
    assert (await store.get_run(run_id)).owner == "w2"


async def test_steal_takes_a_live_lease(store: Store) -> None:
    run_id = await start(store, "r1")
    assert await store.claim(run_id, "w1", lease_until=time.time() + 30)
    assert await store.claim(run_id, "w2", lease_until=time.time() + 30, steal=True)
    assert (await store.get_run(run_id)).owner == "w2"


async def test_release(store: Store) -> None:
    run_id = await start(store, "r1")
    assert await store.claim(run_id, "w1", lease_until=time.time() + 30)
    await store.release(run_id, "w2")  # not the owner: no effect
    assert (await store.get_run(run_id)).owner == "w1"
    await store.release(run_id, "w1")
    run = await store.get_run(run_id)
    assert (run.owner, run.lease_until) == (None, None)
    assert await store.claim(run_id, "w2", lease_until=time.time() + 30)


# -- durability ---------------------------------------------------------------------------------


async def test_data_survives_close_and_reopen(store: Store, store_harness: StoreHarness) -> None:
    if not store_harness.durable:
        pytest.skip("this store keeps nothing across instances")
    run_id = await start(store, "r1", input={"q": "¿qué?"}, created_at=T0)
    await store.append(run_id, [event("r1", 2, EventType.STEP_STARTED)], durable=False)
    await store.append(
        run_id,
        [event("r1", 3, data={"a": [1, 2]})],
        status=S.RUNNING,
        snapshot=Snapshot(3, {"a": 1}),
    )
    await store.append(run_id, [event("r1", 4, EventType.STEP_STARTED)], durable=False)
    assert await store.claim(run_id, "w1", lease_until=T0 + 99)
    events_before = await store.read_events(run_id)
    run_before = await store.get_run(run_id)

    reopened = await store_harness.reopen()
    assert await reopened.get_run(run_id) == run_before
    assert (await reopened.read_events(run_id))[:3] == events_before[:3]
    assert await reopened.load_snapshot(run_id) == Snapshot(3, {"a": 1})
    # the held event 4 is either stored by close() or lost; appending carries on from the log
    next_seq = len(await reopened.read_events(run_id)) + 1
    await reopened.append(run_id, [event("r1", next_seq)], status=S.COMPLETED)
    assert (await reopened.get_run(run_id)).status == S.COMPLETED
