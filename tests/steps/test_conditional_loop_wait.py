from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from cadenza import Engine, MemoryStore, Workflow, WorkflowStatus
from cadenza.core.clock import ManualClock


class S(TypedDict, total=False):
    amount: float
    confidence: float
    premium_customer: bool
    path: Annotated[list[str], operator.add]
    count: int


def mark(tag: str):
    def step(state: S) -> S:
        return {"path": [tag]}

    step.__name__ = tag
    return step


def routing_workflow(mode: str = "first") -> Workflow:
    wf = Workflow(f"routing_{mode}", state=S)
    start, big, unsure, premium, normal, end = (
        mark(t) for t in ("start", "big", "unsure", "premium", "normal", "end")
    )
    for f in (start, big, unsure, premium, normal, end):
        wf.task(f)
    wf.conditional(
        "route",
        {big: "amount > 10000", unsure: "confidence < 0.8", premium: "premium_customer"},
        default=normal,
        mode=mode,
    )
    wf.chain(start, "route")
    wf.edge([big, unsure, premium, normal], end)
    return wf


async def test_first_match_routes_to_one_step_and_skips_the_others(engine: Engine) -> None:
    result = await engine.run(
        routing_workflow(),
        {"amount": 20000, "confidence": 0.5, "premium_customer": True, "path": []},
    )
    assert result.ok
    assert result.state["path"] == ["start", "big", "end"]
    events = await engine.store.read_events(result.run_id)
    skipped = {e.path for e in events if e.type == "step_skipped"}
    assert skipped == {"unsure", "premium", "normal"}


async def test_all_match_runs_every_matching_route(engine: Engine) -> None:
    result = await engine.run(
        routing_workflow("all"),
        {"amount": 20000, "confidence": 0.5, "premium_customer": True, "path": []},
    )
    assert result.ok
    assert sorted(result.state["path"][1:-1]) == ["big", "premium", "unsure"]
    assert result.state["path"][-1] == "end", "the join waits for every taken route"


async def test_default_route_when_nothing_matches(engine: Engine) -> None:
    result = await engine.run(
        routing_workflow(), {"amount": 5, "confidence": 0.9, "premium_customer": False, "path": []}
    )
    assert result.state["path"] == ["start", "normal", "end"]


async def test_bare_field_condition_means_true(engine: Engine) -> None:
    result = await engine.run(
        routing_workflow(), {"amount": 5, "confidence": 0.9, "premium_customer": True, "path": []}
    )
    assert result.state["path"] == ["start", "premium", "end"]


async def test_missing_field_is_a_clear_step_failure(engine: Engine) -> None:
    result = await engine.run(routing_workflow(), {"confidence": 0.9, "path": []})
    assert result.status is WorkflowStatus.FAILED
    assert "step 'route' failed" in (result.error or "")
    assert "amount" in (result.error or "")


async def test_router_function_and_no_route_skips_downstream(engine: Engine) -> None:
    wf = Workflow("router", state=S)
    a, b, after = mark("a"), mark("b"), mark("after")
    for f in (a, b, after):
        wf.task(f)
    wf.conditional("pick", ["a", "b"], router=lambda s: None if s["count"] == 0 else "b")
    wf.edge(["a", "b"], "after")
    wf.start("pick")
    none = await engine.run(wf, {"count": 0, "path": []})
    assert none.ok and none.state["path"] == []
    some = await engine.run(wf, {"count": 1, "path": []})
    assert some.state["path"] == ["b", "after"]


async def test_router_returning_an_undeclared_route_fails(engine: Engine) -> None:
    wf = Workflow("bad_router", state=S)
    wf.task(mark("a"))
    wf.conditional("pick", ["a"], router=lambda s: "zzz")
    wf.start("pick")
    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert "router returned 'zzz', which is not one of its routes: a" in (result.error or "")


async def test_loop_repeats_until_the_exit_condition(engine: Engine) -> None:
    wf = Workflow("loop", state=S)

    def bump(state: S) -> S:
        return {"count": state["count"] + 1, "path": [f"bump{state['count']}"]}

    wf.loop("repeat", body=bump, until="count >= 3", max_iterations=10)
    result = await engine.run(wf, {"count": 0, "path": []})
    assert result.ok
    assert result.state["count"] == 3
    assert result.state["path"] == ["bump0", "bump1", "bump2"]
    events = await engine.store.read_events(result.run_id)
    assert [e.path for e in events if e.type == "loop_iteration"] == [
        "repeat#1",
        "repeat#2",
        "repeat#3",
    ]


async def test_loop_exceeding_max_iterations_fails_the_run(engine: Engine) -> None:
    wf = Workflow("runaway", state=S)

    def bump(state: S) -> S:
        return {"count": state["count"] + 1}

    wf.loop("repeat", body=bump, until="count > 100", max_iterations=4)
    result = await engine.run(wf, {"count": 0})
    assert result.status is WorkflowStatus.FAILED
    assert "reached max_iterations=4 without count > 100 becoming true" in (result.error or "")
    assert result.state["count"] == 4


async def test_wait_is_a_durable_timer() -> None:
    wf = Workflow("waits", state=S)
    wf.task(mark("before"))
    wf.wait("pause", seconds=0.05)
    wf.task(mark("after"))
    clock = ManualClock()
    async with Engine(MemoryStore(), clock=clock) as engine:
        run_id = await engine.start(wf, {"path": []})
        await clock.until_waiting(2)  # the run's deadline, and the timer
        assert engine.in_flight == 1
        clock.advance(0.05)
        result = await engine.wait(run_id)
        events = await engine.store.read_events(result.run_id)
    assert result.ok and result.state["path"] == ["before", "after"]
    timer = next(e for e in events if e.type == "timer_set")
    assert timer.path == "pause" and timer.data["fire_at"] == timer.ts + 0.05
    fired = next(e for e in events if e.type == "step_completed" and e.path == "pause")
    assert fired.ts == timer.data["fire_at"]


async def test_a_guard_skips_its_step_and_the_run_goes_on(engine: Engine) -> None:
    wf = Workflow("guarded", state=S)
    wf.task(mark("start"))
    wf.task(mark("special"), when=["amount > 10000", "premium_customer"])
    wf.task(mark("strict"), when=["amount > 10000", "premium_customer"], match="all")
    wf.task(mark("end"))
    big = await engine.run(wf, {"amount": 20000, "premium_customer": False, "path": []})
    small = await engine.run(wf, {"amount": 5, "premium_customer": False, "path": []})
    assert big.state["path"] == ["start", "special", "end"]
    assert small.state["path"] == ["start", "end"]
    events = await engine.store.read_events(small.run_id)
    skips = {e.path: e.data["reason"] for e in events if e.type == "step_skipped"}
    assert skips == {
        "special": "conditions not met: amount > 10000 or premium_customer",
        "strict": "conditions not met: amount > 10000 and premium_customer",
    }
