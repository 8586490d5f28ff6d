"""A finished run's log stays open to what is refused on it: every store lets an engine hold a
COMPLETED, FAILED or CANCELLED run for a moment and append to its log (the engine records a
refused decision or command there), without changing its status, error, snapshot or wake-up."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import verify
from cadenza.store.base import RunRecord, Snapshot, Store

S = WorkflowStatus


def event(run_id: str, seq: int, type: EventType, **kw: Any) -> Event:
    return Event(run_id=RunId(run_id), seq=seq, type=type, **kw)


@pytest.mark.parametrize("end", [S.COMPLETED, S.FAILED, S.CANCELLED])
async def test_a_finished_run_takes_a_refusal_and_stays_finished(store: Store, end: S) -> None:
    run_id = RunId("r1")
    record = RunRecord(run_id=run_id, workflow="wf", version="v1", wake_at=time.time())
    await store.create_run(record, [event(run_id, 1, EventType.RUN_CREATED)])
    final = Snapshot(seq=2, state={"values": {"x": 1}, "status": str(end), "reason": None})
    finishing = event(run_id, 2, EventType.STATUS, data={"from": "RUNNING", "to": str(end)})
    await store.append(run_id, [finishing], status=end, error="why", snapshot=final)

    epoch = await store.claim(run_id, "engine-a", lease_until=time.time() + 30)
    assert epoch is not None, "a finished run can be held for a moment"
    refusal = {"actor": "mallory", "command": "cancel", "reason": "unknown user"}
    await store.append(run_id, [event(run_id, 3, EventType.REFUSED, data=refusal)], epoch=epoch)
    await store.release(run_id, "engine-a")

    run = await store.get_run(run_id)
    events = await store.read_events(run_id)
    snapshot = await store.load_snapshot(run_id)
    assert (run.status, run.error, run.owner, run.wake_at) == (end, "why", None, None)
    assert [e.type for e in events][-1] is EventType.REFUSED and events[-1].data == refusal
    assert verify(events) is None, "the refusal continues the hash chain"
    assert snapshot is not None and snapshot.seq == 2
    assert end not in {r.status for r in await store.claim_due("w", lease_until=1e12, limit=9)}
