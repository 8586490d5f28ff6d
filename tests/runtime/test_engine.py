from __future__ import annotations

import asyncio
import operator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import BaseModel

from cadenza import (
    CadenzaError,
    Engine,
    Event,
    ExecutionContext,
    IllegalTransition,
    InputError,
    MemoryStore,
    SQLiteStore,
    VersionMismatch,
    Workflow,
    WorkflowStatus,
)
from cadenza.runtime import progress as progress_module
from cadenza.runtime import run as run_module


class S(TypedDict, total=False):
    n: int
    log: Annotated[list[str], operator.add]
    items: list[int]
    out: Annotated[list[int], operator.add]


async def test_input_is_validated_against_the_schema(engine: Engine) -> None:
    wf = Workflow("typed", state=S)
    wf.task(lambda s: None, name="noop")
    with pytest.raises(InputError, match="input field n: Input should be a valid integer"):
        await engine.start(wf, {"n": "many"})
    with pytest.raises(InputError, match="input has field 'zzz' that the state schema S lacks"):
        await engine.start(wf, {"zzz": 1})
    assert await engine.store.list_runs() == [], "a refused start stores nothing"


async def test_status_transitions_are_events(engine: Engine) -> None:
    wf = Workflow("statuses", state=S)
    wf.task(lambda s: {"n": 1}, name="one")
    result = await engine.run(wf, {})
    events = await engine.store.read_events(result.run_id)
    transitions = [(e.data["from"], e.data["to"]) for e in events if e.type == "status"]
    assert transitions == [("INITIALIZING", "RUNNING"), ("RUNNING", "COMPLETED")]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    record = await engine.store.get_run(result.run_id)
    assert record.status is WorkflowStatus.COMPLETED
    assert record.owner is None, "the lease is released when the run ends"


async def test_cancel_stops_a_running_run(engine: Engine) -> None:
    wf = Workflow("cancel", state=S)
    started = asyncio.Event()

    async def slow(state: S) -> S:
        started.set()
        await asyncio.sleep(30)
        return {}

    wf.task(slow)
    run_id = await engine.start(wf, {})
    await started.wait()
    result = await engine.cancel(run_id, "customer withdrew")
    assert result.status is WorkflowStatus.CANCELLED
    assert (await engine.store.get_run(run_id)).error == "customer withdrew"
    with pytest.raises(IllegalTransition):
        await engine.cancel(run_id)


class Observer:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        self.events.append(event)


class BrokenObserver:
    def on_event(self, event: Event, **future: Any) -> None:
        raise RuntimeError("observer bug")


async def test_observers_see_every_stored_event_and_cannot_break_runs() -> None:
    seen = Observer()
    wf = Workflow("observed", state=S)
    wf.task(lambda s: {"n": 1}, name="one")
    wf.task(lambda s: {"n": 2}, name="two")
    async with Engine(MemoryStore(), observers=[BrokenObserver(), seen]) as engine:
        result = await engine.run(wf, {})
        stored = await engine.store.read_events(result.run_id)
    assert result.ok
    # the first two events are written with the run itself, before observers are involved;
    # step starts are live events (seq 0), not stored
    assert [e.seq for e in seen.events if e.seq] == [e.seq for e in stored[2:]]
    starts = [e for e in seen.events if e.type == "step_started"]
    assert [(e.path, e.seq, e.attempt) for e in starts] == [("one", 0, 1), ("two", 0, 1)]


def gated_workflow(
    gate: asyncio.Event, calls: list[str], at_gate: asyncio.Event | None = None
) -> Workflow:
    """A workflow whose ``third`` step blocks on ``gate`` (setting ``at_gate`` when it gets
    there): close the engine there to 'crash'."""
    wf = Workflow("gated", state=S)

    def step(tag: str):
        async def f(state: S, ctx: ExecutionContext) -> S:
            calls.append(f"{tag}@{ctx.attempt}")
            if tag == "third":
                if at_gate is not None:
                    at_gate.set()
                await gate.wait()
            return {"log": [tag], "n": state.get("n", 0) + 1}

        f.__name__ = tag
        return f

    for tag in ("first", "second", "third", "fourth"):
        wf.task(step(tag))
    return wf


async def test_resume_skips_committed_steps_and_reruns_the_one_in_flight() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    calls: list[str] = []
    at_gate = asyncio.Event()
    wf = gated_workflow(gate, calls, at_gate)
    engine = Engine(store)
    run_id = await engine.start(wf, {"log": []})
    await at_gate.wait()
    await engine.close()  # the run stops mid-step, as if its process had died
    assert (await store.get_run(run_id)).status is WorkflowStatus.RUNNING

    gate.set()
    async with Engine(store) as second:
        result = await second.resume(run_id, wf)
    assert result.ok
    assert result.state["log"] == ["first", "second", "third", "fourth"]
    assert result.state["n"] == 4
    assert calls == ["first@1", "second@1", "third@1", "third@1", "fourth@1"]


async def test_resume_refuses_a_changed_definition() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    calls: list[str] = []
    at_gate = asyncio.Event()
    engine = Engine(store)
    run_id = await engine.start(gated_workflow(gate, calls, at_gate), {})
    await at_gate.wait()
    await engine.close()
    changed = gated_workflow(gate, calls)
    changed.task(lambda s: None, name="extra")
    async with Engine(store) as second:
        with pytest.raises(VersionMismatch, match="runs resume only on the definition"):
            await second.resume(run_id, changed)


async def test_resume_of_unknown_workflow_says_how_to_fix_it() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    at_gate = asyncio.Event()
    engine = Engine(store)
    run_id = await engine.start(gated_workflow(gate, [], at_gate), {})
    await at_gate.wait()
    await engine.close()
    async with Engine(store) as second:
        with pytest.raises(CadenzaError, match=r"register it with engine\.register"):
            await second.resume(run_id)


async def test_resume_continues_a_partly_done_map_from_snapshot_and_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_module, "SNAPSHOT_EVERY", 7)  # force several snapshots mid-map
    store = MemoryStore()
    gate = asyncio.Event()
    at_gate = asyncio.Event()
    calls: list[int] = []

    async def square(state: S, ctx: ExecutionContext) -> S:
        calls.append(ctx.item)
        if ctx.item >= 15:
            at_gate.set()
            await gate.wait()
        return {"out": [ctx.item * ctx.item]}

    wf = Workflow("mapped", state=S)
    wf.map("each", items="items", branch=square, max_concurrent=1)
    engine = Engine(store)
    run_id = await engine.start(wf, {"items": list(range(20))})
    await at_gate.wait()
    await engine.close()
    assert await store.load_snapshot(run_id) is not None

    gate.set()
    async with Engine(store) as second:
        result = await second.resume(run_id, wf)
    assert result.ok
    assert result.state["out"] == [i * i for i in range(20)]
    assert calls == [*range(16), *range(15, 20)], "only the in-flight item ran twice"


async def test_fold_from_snapshot_equals_fold_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "SNAPSHOT_EVERY", 5)
    wf = Workflow("fold", state=S)

    def branch(state: S, ctx: ExecutionContext) -> S:
        return {"out": [ctx.item], "log": [f"b{ctx.item}"]}

    wf.task(lambda s: {"log": ["start"]}, name="start")
    wf.map("each", items="items", branch=branch)
    wf.loop("again", body=lambda s: {"n": s.get("n", 0) + 1}, until="n >= 3", max_iterations=5)
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"items": [3, 1, 2]})
        events = await engine.store.read_events(result.run_id)
        snapshot = await engine.store.load_snapshot(result.run_id)
    reducers = wf.compile().schema.reducers
    scratch = progress_module.Progress(reducers).apply_all(events)
    assert snapshot is not None
    restored = progress_module.Progress.restore(reducers, snapshot).apply_all(
        events[snapshot.seq :]
    )
    assert scratch.state == restored.state == result.state
    assert result.state["out"] == [3, 1, 2]


class Address(BaseModel):
    city: str
    zip: str


class Typed(TypedDict, total=False):
    address: Address
    when: date
    note: str


async def test_typed_values_come_back_typed_after_a_restart(tmp_path: Path) -> None:
    gate = asyncio.Event()
    at_gate = asyncio.Event()
    wf = Workflow("typed_resume", state=Typed)

    def make(state: Typed) -> Typed:
        return {"address": Address(city="Lyon", zip="69001"), "when": date(2026, 11, 24)}

    async def check(state: Typed) -> Typed:
        at_gate.set()  # ``make`` is recorded
        await gate.wait()
        assert isinstance(state["address"], Address)
        assert state["when"] == date(2026, 11, 24)
        return {"note": state["address"].city}

    wf.task(make)
    wf.task(check)
    engine = Engine(SQLiteStore(tmp_path / "t.db"))
    run_id = await engine.start(wf, {})
    await at_gate.wait()
    await engine.close()
    gate.set()
    async with Engine(SQLiteStore(tmp_path / "t.db")) as second:
        result = await second.resume(run_id, wf)
    assert result.ok, result.error
    assert result.state["note"] == "Lyon"
