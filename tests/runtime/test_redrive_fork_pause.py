from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest

from cadenza import (
    CadenzaError,
    Engine,
    ExecutionContext,
    IllegalTransition,
    MemoryStore,
    Workflow,
    WorkflowStatus,
)
from cadenza.core.events import Event, EventType


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    amount: int
    broken: bool


def pipeline(calls: list[str], payments_up: list[bool] | None = None) -> Workflow:
    """validate → price → charge → ship; ``charge`` fails while ``payments_up[0]`` is false."""
    wf = Workflow("pipeline", state=S)

    def step(tag: str):
        def run(state: S, ctx: ExecutionContext) -> S:
            calls.append(tag)
            if tag == "charge" and payments_up is not None and not payments_up[0]:
                raise ConnectionError("payments down")
            return {"log": [f"{tag}:{state.get('amount', 0)}"]}

        run.__name__ = tag
        return run

    for tag in ("validate", "price", "charge", "ship"):
        wf.task(step(tag))
    return wf


async def test_redrive_a_failed_run_from_the_failed_step() -> None:
    calls: list[str] = []
    payments_up = [False]
    wf = pipeline(calls, payments_up)
    async with Engine(MemoryStore()) as engine:
        failed = await engine.run(wf, {"amount": 5})
        assert failed.status is WorkflowStatus.FAILED
        payments_up[0] = True
        calls.clear()
        redriven = await engine.redrive(failed.run_id)
        record = await engine.store.get_run(redriven.run_id)
    assert redriven.ok, redriven.error
    assert calls == ["charge", "ship"], "validate and price were not run again"
    assert redriven.state["log"] == ["validate:5", "price:5", "charge:5", "ship:5"]
    assert record.parent_run_id == failed.run_id


async def test_fork_from_a_step_with_changed_state() -> None:
    calls: list[str] = []
    wf = pipeline(calls)
    async with Engine(MemoryStore()) as engine:
        first = await engine.run(wf, {"amount": 5})
        calls.clear()
        forked = await engine.fork(first.run_id, after="price", set={"amount": 7})
        events = await engine.store.read_events(forked.run_id)
    assert forked.ok
    assert calls == ["charge", "ship"]
    assert forked.state["log"] == ["validate:5", "price:5", "charge:7", "ship:7"]
    assert events[0].data["parent_run_id"] == first.run_id
    assert any(e.type == "state_patched" for e in events)


async def test_fork_errors_are_clear() -> None:
    wf = pipeline([])
    async with Engine(MemoryStore()) as engine:
        done = await engine.run(wf, {})
        with pytest.raises(CadenzaError, match="step 'prcie' has no recorded completion"):
            await engine.fork(done.run_id, after="prcie")
        with pytest.raises(CadenzaError, match="input has field 'nope'"):
            await engine.fork(done.run_id, after="price", set={"nope": 1})
        with pytest.raises(CadenzaError, match="only FAILED or CANCELLED runs can be re-driven"):
            await engine.redrive(done.run_id)


async def test_a_rolled_back_run_is_not_redriven() -> None:
    wf = Workflow("rolled", state=S)
    wf.task(lambda s: None, name="charge", compensate=lambda s: None)
    wf.task(lambda s: 1 / 0, name="boom")
    async with Engine(MemoryStore()) as engine:
        failed = await engine.run(wf, {})
        with pytest.raises(CadenzaError, match="was rolled back"):
            await engine.redrive(failed.run_id)


async def test_pause_holds_new_steps_and_unpause_continues() -> None:
    first_done = asyncio.Event()
    proceed = asyncio.Event()
    calls: list[str] = []

    async def one(state: S) -> S:
        calls.append("one")
        first_done.set()
        await proceed.wait()
        return {"log": ["one"]}

    async def two(state: S) -> S:
        calls.append("two")
        return {"log": ["two"]}

    one_recorded = asyncio.Event()

    class Recorded:
        def on_event(self, event: Event, **_: Any) -> None:
            if event.type is EventType.STEP_COMPLETED and event.path == "one":
                one_recorded.set()

    wf = Workflow("pausable", state=S)
    wf.task(one)
    wf.task(two)
    async with Engine(MemoryStore(), observers=[Recorded()]) as engine:
        run_id = await engine.start(wf, {})
        await first_done.wait()
        await engine.pause(run_id, "maintenance window")
        proceed.set()
        # Told once ``one`` is stored; by then an unpaused run would have entered ``two``.
        await one_recorded.wait()
        record = await engine.store.get_run(run_id)
        assert record.status is WorkflowStatus.PAUSED
        assert calls == ["one"], "the step in flight finished; the next did not start"
        with pytest.raises(IllegalTransition):
            await engine.pause(run_id)
        result = await engine.unpause(run_id)
    assert result.ok and result.state["log"] == ["one", "two"]


async def test_a_paused_run_stays_paused_across_restarts() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow(state: S) -> S:
        started.set()
        await gate.wait()
        return {"log": ["slow"]}

    wf = Workflow("paused_restart", state=S)
    wf.task(slow)
    wf.task(lambda s: {"log": ["after"]}, name="after")
    engine = Engine(store)
    run_id = await engine.start(wf, {})
    await started.wait()
    await engine.pause(run_id)
    await engine.close()
    gate.set()
    async with Engine(store) as second:
        second.register(wf)
        report = await second.resume_all()
        assert report.results == [], "paused runs are not resumed"
        result = await second.unpause(run_id)
    assert result.ok and result.state["log"] == ["slow", "after"]
