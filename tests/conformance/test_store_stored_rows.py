"""The audit verifier's view of a store (``stored_run_ids``, ``read_stored``): the rows as
stored, undecoded, the same on every store, and enough to recompute every chain."""

from __future__ import annotations

import json
import time

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit_verify import check_run
from cadenza.store.base import RunRecord, Snapshot, Store, StoredLog

S = WorkflowStatus
T0 = 1_700_000_000.0
INPUT = {"topic": "Ærøskøbing ☕", "n": 3, "nested": {"b": [1, 2.5, None], "a": True}}


async def start(store: Store, run_id: str, created_at: float) -> RunId:
    """A run as an engine starts it: created, then RUNNING, the row's status matching."""
    rid = RunId(run_id)
    record = RunRecord(run_id=rid, workflow="wf", version="v1", input=INPUT, created_at=created_at)
    data = {"workflow": "wf", "version": "v1", "input": INPUT}
    await store.create_run(record, [Event(rid, 1, EventType.RUN_CREATED, data=data, ts=T0)])
    running = Event(rid, 2, EventType.STATUS, data={"from": "INITIALIZING", "to": "RUNNING"})
    await store.append(rid, [running], status=S.RUNNING)
    return rid


async def test_an_unknown_id_holds_nothing(store: Store) -> None:
    log = await store.read_stored(RunId("nobody"))
    assert log == StoredLog(RunId("nobody"), None, [], None) and log.empty


async def test_rows_come_back_as_stored(store: Store) -> None:
    rid = await start(store, "r1", time.time())
    step = Event(rid, 3, EventType.STEP_COMPLETED, "draft", "", 2, {"update": {"x": "é"}}, T0 + 1)
    snapshot = Snapshot(seq=3, state={"values": {"x": "é"}}, buffers={"b": [{"y": 1}]})
    await store.append(rid, [step], snapshot=snapshot)
    log = await store.read_stored(rid)
    events = await store.read_events(rid)

    assert log.run is not None
    assert (log.run.workflow, log.run.version, log.run.status) == ("wf", "v1", "RUNNING")
    assert isinstance(log.run.input, str) and json.loads(log.run.input) == INPUT
    assert len(log.events) == len(events) == 3
    for row, event in zip(log.events, events, strict=True):
        assert (row.seq, row.type, row.path, row.scope, row.attempt) == (
            event.seq,
            str(event.type),
            event.path,
            event.scope,
            event.attempt,
        )
        assert type(row.seq) is int and type(row.attempt) is int
        assert isinstance(row.data, str) and json.loads(row.data) == event.data
        assert row.ts == event.ts and (row.prev_hash, row.hash) == (event.prev_hash, event.hash)
    assert log.snapshot is not None and log.snapshot.seq == 3
    assert isinstance(log.snapshot.state, str) and isinstance(log.snapshot.buffers, str)
    assert json.loads(log.snapshot.state) == snapshot.state
    assert json.loads(log.snapshot.buffers) == snapshot.buffers


async def test_every_store_verifies_its_own_rows(store: Store) -> None:
    """The chain recomputed from the raw rows is the one the store computed on append, and
    the run row agrees with the log."""
    rid = await start(store, "r1", time.time())
    finished = Event(rid, 3, EventType.STATUS, data={"from": "RUNNING", "to": "COMPLETED"})
    await store.append(rid, [finished], status=S.COMPLETED)
    check = check_run(await store.read_stored(rid))
    assert check.broken is None
    assert check.head == (3, (await store.read_events(rid))[-1].hash)


async def test_run_ids_are_listed_newest_first(store: Store) -> None:
    now = time.time()
    for n, run_id in enumerate(["old", "mid", "new"]):
        await start(store, run_id, now + n)
    assert await store.stored_run_ids() == ["new", "mid", "old"]
