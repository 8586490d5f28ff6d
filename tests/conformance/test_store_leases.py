"""The Store contract's leases, fencing, due runs and commands (``cadenza.store.base``),
checked against every store implementation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cadenza.core.errors import RunNotFound, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store.base import DUE_NOW, LeaseLost, RunRecord, Snapshot, Store

S = WorkflowStatus


def event(run_id: str, seq: int, type: EventType = EventType.STEP_COMPLETED, **kw: Any) -> Event:
    return Event(run_id=RunId(run_id), seq=seq, type=type, **kw)


async def start(store: Store, run_id: str, **changes: Any) -> RunId:
    fields: dict[str, Any] = {"workflow": "wf", "version": "v1", **changes}
    await store.create_run(
        RunRecord(run_id=RunId(run_id), **fields), [event(run_id, 1, EventType.RUN_CREATED)]
    )
    return RunId(run_id)


async def queued(store: Store, run_id: str, *, ago: float = 1.0, **changes: Any) -> RunId:
    """A run waiting for a worker: unowned, due ``ago`` seconds ago."""
    return await start(store, run_id, wake_at=time.time() - ago, **changes)


async def seqs(store: Store, run_id: RunId) -> list[int]:
    return [e.seq for e in await store.read_events(run_id)]


def soon() -> float:
    return time.time() + 30


# -- epochs and fencing -------------------------------------------------------------------------


async def test_claims_that_change_the_owner_start_a_new_epoch(store: Store) -> None:
    run_id = await start(store, "r1")
    first = await store.claim(run_id, "w1", lease_until=soon())
    assert first is not None and first >= 1
    assert await store.claim(run_id, "w1", lease_until=soon()) == first  # a renewal
    assert await store.claim(run_id, "w2", lease_until=soon()) is None  # held
    taken = await store.claim(run_id, "w2", lease_until=soon(), steal=True)
    assert taken == first + 1
    assert (await store.get_run(run_id)).epoch == taken
    await store.release(run_id, "w2")
    again = await store.claim(run_id, "w2", lease_until=soon())
    assert again == taken + 1  # released and claimed again: whoever it is, a new epoch


async def test_a_fenced_append_needs_the_current_epoch(store: Store) -> None:
    run_id = await start(store, "r1", status=S.RUNNING)
    old = await store.claim(run_id, "w1", lease_until=time.time() - 1)  # already expired
    assert old is not None
    await store.append(run_id, [event("r1", 2)], epoch=old)
    new = await store.claim(run_id, "w2", lease_until=soon())
    assert new == old + 1
    before = await store.get_run(run_id)
    with pytest.raises(LeaseLost) as caught:
        await store.append(
            run_id,
            [event("r1", 3, data={"by": "w1"})],
            status=S.COMPLETED,
            error="late",
            snapshot=Snapshot(3, {"late": True}),
            epoch=old,
        )
    assert caught.value.epoch == old and caught.value.current == new
    assert "stale" in str(caught.value)
    assert await seqs(store, run_id) == [1, 2]
    assert await store.get_run(run_id) == before
    assert await store.load_snapshot(run_id) is None
    await store.append(run_id, [event("r1", 3, data={"by": "w2"})], epoch=new)
    assert (await store.read_events(run_id))[-1].data == {"by": "w2"}


async def test_a_stale_append_fails_alone_among_concurrent_ones(store: Store) -> None:
    runs = [await start(store, f"r{i}") for i in range(6)]
    epochs = [await store.claim(r, "w1", lease_until=soon()) for r in runs]
    stolen = await store.claim(runs[2], "w2", lease_until=soon(), steal=True)
    results = await asyncio.gather(
        *(store.append(r, [event(r, 2)], epoch=e) for r, e in zip(runs, epochs, strict=True)),
        return_exceptions=True,
    )
    assert isinstance(results[2], LeaseLost)
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 5
    assert await seqs(store, runs[2]) == [1]
    assert await seqs(store, runs[0]) == [1, 2]
    await store.append(runs[2], [event(runs[2], 2)], epoch=stolen)


async def test_unfenced_appends_are_not_checked(store: Store) -> None:
    run_id = await start(store, "r1")
    await store.claim(run_id, "w1", lease_until=soon())
    await store.append(run_id, [event("r1", 2)])
    assert await seqs(store, run_id) == [1, 2]


# -- due runs ----------------------------------------------------------------------------------


async def test_claim_due_takes_due_unheld_runs_oldest_first(store: Store) -> None:
    now = time.time()
    await start(store, "later", wake_at=now + 60)
    await start(store, "never")  # wake_at None: nothing to do by itself
    await queued(store, "newer", ago=1)
    await queued(store, "older", ago=5)
    await queued(store, "held", ago=9)
    await store.claim(RunId("held"), "w0", lease_until=soon())
    await queued(store, "done", ago=9, status=S.COMPLETED)
    await queued(store, "paused", ago=9, status=S.PAUSED)
    await queued(store, "waiting", ago=9, status=S.WAITING_APPROVAL)
    claimed = await store.claim_due("w1", lease_until=soon(), limit=10)
    assert [r.run_id for r in claimed] == ["waiting", "older", "newer"]
    for record in claimed:
        stored = await store.get_run(record.run_id)
        assert (stored.owner, stored.epoch) == ("w1", record.epoch)
        assert record.owner == "w1" and record.epoch >= 1
    assert await store.claim_due("w2", lease_until=soon(), limit=10) == []


async def test_claim_due_respects_limit_queues_and_workflows(store: Store) -> None:
    await queued(store, "a", ago=4, queue="fast")
    await queued(store, "b", ago=3, queue="slow")
    await queued(store, "c", ago=2, workflow="other")
    await queued(store, "d", ago=1, version="v2")
    ids = [r.run_id for r in await store.claim_due("w", lease_until=soon(), limit=1)]
    assert ids == ["a"]
    got = await store.claim_due("w", lease_until=soon(), limit=9, queues=["slow", "x"])
    assert [r.run_id for r in got] == ["b"]
    got = await store.claim_due("w", lease_until=soon(), limit=9, workflows=[("wf", "v2")])
    assert [r.run_id for r in got] == ["d"]
    assert await store.claim_due("w", lease_until=soon(), limit=9, workflows=[]) == []
    assert await store.claim_due("w", lease_until=soon(), limit=9, queues=[]) == []
    assert await store.claim_due("w", lease_until=soon(), limit=0) == []
    assert [r.run_id for r in await store.claim_due("w", lease_until=soon(), limit=9)] == ["c"]


async def test_claim_due_of_given_runs_takes_only_those_that_are_due(store: Store) -> None:
    await queued(store, "mine", ago=2)
    await queued(store, "also_mine", ago=1)
    await queued(store, "not_mine", ago=3)
    await start(store, "mine_later", wake_at=time.time() + 60)
    await queued(store, "mine_held", ago=4)
    assert await store.claim(RunId("mine_held"), "w0", lease_until=soon())
    wanted = [RunId(i) for i in ("also_mine", "mine", "mine_later", "mine_held", "unknown")]
    claimed = await store.claim_due("w1", lease_until=soon(), limit=9, run_ids=wanted)
    assert [r.run_id for r in claimed] == ["mine", "also_mine"]
    assert all(r.owner == "w1" for r in claimed)
    assert await store.claim_due("w1", lease_until=soon(), limit=9, run_ids=[]) == []
    assert [r.run_id for r in await store.claim_due("w2", lease_until=soon(), limit=9)] == [
        "not_mine"
    ]


async def test_expired_and_dead_owners_runs_are_due_again(store: Store) -> None:
    await queued(store, "expired")
    await queued(store, "dead")
    await queued(store, "alive")
    assert await store.claim(RunId("expired"), "w0", lease_until=time.time() - 1)
    assert await store.claim(RunId("dead"), "gone", lease_until=soon())
    assert await store.claim(RunId("alive"), "w0", lease_until=soon())
    claimed = await store.claim_due("w1", lease_until=soon(), limit=9, dead_owners=["gone"])
    assert sorted(r.run_id for r in claimed) == ["dead", "expired"]
    assert sorted(await store.owners()) == ["w0", "w1"]


async def test_a_held_run_is_due_and_release_sets_when_next(store: Store) -> None:
    run_id = await start(store, "r1", wake_at=time.time() + 3600)
    assert await store.claim(run_id, "w1", lease_until=time.time() - 1)
    wake = (await store.get_run(run_id)).wake_at
    assert wake is not None and wake <= time.time()  # its owner may die: then it is due
    await store.release(run_id, "w2")  # not the owner: nothing
    assert (await store.get_run(run_id)).owner == "w1"
    later = time.time() + 120
    await store.release(run_id, "w1", wake_at=later)
    run = await store.get_run(run_id)
    assert (run.owner, run.lease_until, run.wake_at) == (None, None, later)
    assert await store.claim_due("w1", lease_until=soon(), limit=9) == []
    assert await store.claim(run_id, "w1", lease_until=soon())
    await store.release(run_id, "w1", wake_at=None)
    assert (await store.get_run(run_id)).wake_at is None
    assert await store.claim(run_id, "w1", lease_until=soon())
    await store.release(run_id, "w1")  # default: due at once
    assert (await store.get_run(run_id)).wake_at == DUE_NOW
    assert [r.run_id for r in await store.claim_due("w2", lease_until=soon(), limit=9)] == [run_id]


async def test_finishing_a_run_makes_it_due_never(store: Store) -> None:
    run_id = await queued(store, "r1", status=S.RUNNING)
    epoch = await store.claim(run_id, "w1", lease_until=soon())
    await store.append(run_id, [event("r1", 2)], status=S.RUNNING, epoch=epoch)
    assert (await store.get_run(run_id)).wake_at is not None
    await store.append(run_id, [event("r1", 3)], status=S.COMPLETED, epoch=epoch)
    assert (await store.get_run(run_id)).wake_at is None
    await store.release(run_id, "w1", wake_at=DUE_NOW)
    assert (await store.get_run(run_id)).wake_at is None


async def test_renew_extends_only_the_leases_still_held(store: Store) -> None:
    mine = await start(store, "mine")
    lost = await start(store, "lost")
    e1 = await store.claim(mine, "w1", lease_until=time.time() + 1)
    e2 = await store.claim(lost, "w1", lease_until=time.time() + 1)
    assert e1 is not None and e2 is not None
    assert await store.claim(lost, "w2", lease_until=soon(), steal=True)
    later = time.time() + 90
    held = await store.renew("w1", {mine: e1, lost: e2}, lease_until=later)
    assert held == {mine}
    assert (await store.get_run(mine)).lease_until == later
    assert (await store.get_run(lost)).owner == "w2"
    assert await store.renew("w1", {}, lease_until=later) == set()
    assert await store.renew("w1", {RunId("missing"): 1}, lease_until=later) == set()


async def test_concurrent_claimers_never_share_a_run(store: Store) -> None:
    for i in range(60):
        await queued(store, f"r{i:02d}", ago=60 - i)

    async def claimer(name: str) -> list[RunId]:
        got: list[RunId] = []
        while batch := await store.claim_due(name, lease_until=soon(), limit=3):
            got += [r.run_id for r in batch]
        return got

    hauls = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    taken = [r for haul in hauls for r in haul]
    assert sorted(taken) == [f"r{i:02d}" for i in range(60)]


# -- commands ----------------------------------------------------------------------------------


async def test_commands_round_trip_and_make_the_run_due(store: Store) -> None:
    run_id = await start(store, "r1", status=S.RUNNING)
    other = await start(store, "r2", status=S.RUNNING)
    first = await store.send_command(run_id, "signal", {"name": "go", "payload": [1, "é"]})
    second = await store.send_command(run_id, "cancel", {"reason": "stop"}, actor="ann")
    third = await store.send_command(other, "pause", {})
    wake = (await store.get_run(run_id)).wake_at
    assert wake is not None and wake <= time.time()
    pending = await store.pending_commands([run_id])
    assert [(c.id, c.kind, c.data, c.actor) for c in pending] == [
        (first, "signal", {"name": "go", "payload": [1, "é"]}, ""),
        (second, "cancel", {"reason": "stop"}, "ann"),
    ]
    assert [c.id for c in await store.pending_commands()] == [first, second, third]
    assert await store.pending_commands([]) == []
    await store.finish_command(first, "delivered")
    done = await store.get_command(first)
    assert done is not None and done.outcome == "delivered" and done.done_at is not None
    await store.finish_command(first, "again")  # applied once: the first outcome stays
    assert (await store.get_command(first)).outcome == "delivered"  # type: ignore[union-attr]
    assert [c.id for c in await store.pending_commands()] == [second, third]
    assert await store.get_command(10_000) is None


async def test_a_pending_command_makes_a_released_run_due(store: Store) -> None:
    run_id = await start(store, "r1", status=S.RUNNING)
    assert await store.claim(run_id, "w1", lease_until=soon())
    await store.send_command(run_id, "signal", {"name": "go"})
    await store.release(run_id, "w1", wake_at=None)  # the holder missed it: due anyway
    wake = (await store.get_run(run_id)).wake_at
    assert wake is not None and wake <= time.time()


async def test_commands_to_unknown_runs_or_of_bad_data_are_refused(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.send_command(RunId("missing"), "cancel", {})
    run_id = await start(store, "r1")
    with pytest.raises(StoreError, match="JSON"):
        await store.send_command(run_id, "signal", {"payload": object()})
    assert await store.pending_commands() == []
