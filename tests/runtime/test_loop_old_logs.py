"""Runs that the code before loop iterations were folded left mid-loop (``old_loop_logs.json``:
real logs and snapshots it wrote, see ``loopy.py``) resume on the current code exactly: at
the right iteration, nothing committed run again, and their old snapshots still pass audit."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.runtime.loopy import build, expected_state

from cadenza import Engine, MemoryStore, SQLiteStore, WorkflowStatus
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.observe.audit import Reason
from cadenza.observe.audit_store import verify_store
from cadenza.runtime.progress import Progress
from cadenza.store.base import RunRecord, Snapshot, Store

OLD = json.loads((Path(__file__).parent / "old_loop_logs.json").read_text())
ITERATIONS = 20  # the fixtures' runs were of build(20)


def old_log(case: str) -> tuple[RunRecord, list[Event], Snapshot]:
    data = OLD[case]
    run = data["run"]
    record = RunRecord(
        RunId(run["run_id"]), run["workflow"], run["version"], status=WorkflowStatus.RUNNING
    )
    events = [Event.from_row(row) for row in data["events"]]
    snap = data["snapshot"]
    return record, events, Snapshot(snap["seq"], snap["state"], snap["buffers"])


async def store_old_log(store: Store, case: str) -> RunId:
    """The old run as the old code left it: its events, and its snapshot stored with the
    append of the event it was taken at."""
    record, events, snapshot = old_log(case)
    at = snapshot.seq
    await store.create_run(record, events[: at - 1])
    await store.append(record.run_id, events[at - 1 : at], snapshot=snapshot)
    if events[at:]:
        await store.append(record.run_id, events[at:])
    return record.run_id


def effects(path: Path) -> list[str]:
    lines = path.read_text().split() if path.exists() else []
    return [line.split(":", 1)[1] for line in lines]


@pytest.fixture
def effects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.txt"
    monkeypatch.setenv("LOOPY_EFFECTS", str(path))
    return path


CASES = ["killed_in_tally", "killed_after_exit", "killed_after_the_loop"]


@pytest.mark.parametrize("case", CASES)
def test_an_old_snapshot_restores_folded(case: str) -> None:
    _, events, snapshot = old_log(case)
    assert "loops" not in snapshot.state, "the fixture is a snapshot in the old shape"
    assert sum("#" in path for path in snapshot.state["done"]) > 2 * 10
    reducers = build(ITERATIONS).compile().schema.reducers
    restored = Progress.restore(reducers, snapshot)
    scratch = Progress(reducers).apply_all(events[: snapshot.seq])
    assert restored.snapshot() == scratch.snapshot()
    finished = max(
        int(e.path.split("#")[1]) for e in events[: snapshot.seq] if e.type == "loop_iteration"
    )
    if "lp" in restored.done:  # the loop completed: no cursor left
        assert restored.loops == {} and restored.done["lp"] == {"iterations": ITERATIONS}
    else:
        assert restored.loops == {"lp": {"iteration": finished, "exit": finished == ITERATIONS}}
    inside = [p for p in restored.done if "#" in p]
    assert all(p.startswith(f"lp#{finished + 1}/") for p in inside), "only the open iteration"


def stores(tmp_path: Path) -> dict[str, Store]:
    return {"memory": MemoryStore(), "sqlite": SQLiteStore(tmp_path / "old.db")}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_run_left_mid_iteration_resumes_in_that_iteration(
    kind: str, tmp_path: Path, effects_file: Path
) -> None:
    """Killed inside ``lp#16/tally``: ``lp#16/work`` was committed, so only ``tally`` of
    iteration 16 runs again (same idempotency key), then iterations 17 to 20."""
    async with Engine(stores(tmp_path)[kind]) as engine:
        run_id = await store_old_log(engine.store, "killed_in_tally")
        result = await engine.resume(run_id, build(ITERATIONS))
        events = await engine.store.read_events(run_id)
    assert result.ok, result.error
    assert result.state == expected_state(ITERATIONS)
    rest = [f"lp#{k}/{name}" for k in range(17, ITERATIONS + 1) for name in ("work", "tally")]
    assert effects(effects_file) == ["lp#16/tally", *rest, "finish"]
    assert_log_whole(events)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("case", ["killed_after_exit", "killed_after_the_loop"])
async def test_a_run_left_at_the_end_of_its_loop_goes_on_after_it(
    case: str, kind: str, tmp_path: Path, effects_file: Path
) -> None:
    """The old code stored the exit iteration and the loop's completion in two appends:
    killed between them (or after both), the loop completes without running its body again."""
    async with Engine(stores(tmp_path)[kind]) as engine:
        run_id = await store_old_log(engine.store, case)
        result = await engine.resume(run_id, build(ITERATIONS))
        events = await engine.store.read_events(run_id)
    assert result.ok, result.error
    assert result.state == expected_state(ITERATIONS)
    assert effects(effects_file) == ["finish"]
    (done,) = [e for e in events if e.type == "step_completed" and e.path == "lp"]
    assert done.data["iterations"] == ITERATIONS
    assert_log_whole(events)


async def test_the_auditor_accepts_snapshots_taken_before_folding(
    tmp_path: Path, effects_file: Path
) -> None:
    async with Engine(SQLiteStore(tmp_path / "audit.db")) as engine:
        run_ids = [await store_old_log(engine.store, case) for case in CASES]
        before = await verify_store(engine.store)
        for run_id in run_ids:
            assert (await engine.resume(run_id, build(ITERATIONS))).ok
        after = await verify_store(engine.store)
    assert [c.broken for c in before] == [None] * len(CASES)
    assert [c.broken for c in after] == [None] * len(CASES)


async def test_the_auditor_still_sees_a_forged_old_snapshot(
    tmp_path: Path, effects_file: Path
) -> None:
    """Folding an old snapshot for the comparison hides nothing a resumed run would read: a
    forged iteration count in it is still found."""
    record, events, snapshot = old_log("killed_in_tally")
    forged: dict[str, Any] = json.loads(json.dumps(snapshot.state))
    last = max(int(p.split("#")[1]) for p in forged["done"] if "#" in p and "/" not in p)
    forged["done"][f"lp#{last + 1}"] = {"iteration": last + 1, "exit": False}
    store = MemoryStore()
    await store.create_run(record, events[: snapshot.seq - 1])
    await store.append(
        record.run_id,
        events[snapshot.seq - 1 : snapshot.seq],
        snapshot=Snapshot(snapshot.seq, forged, snapshot.buffers),
    )
    (check,) = await verify_store(store)
    assert check.broken is not None and check.broken.reason is Reason.SNAPSHOT


def assert_log_whole(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values()), completed
    turns = [e.path for e in events if e.type == "loop_iteration"]
    assert turns == [f"lp#{k}" for k in range(1, ITERATIONS + 1)]
