from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

from tests.probes import Peak

from cadenza import Engine, ExecutionContext, Workflow, WorkflowStatus


class S(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    total: Annotated[int, operator.add]
    last: str
    items: list[int]
    squares: Annotated[list[int], operator.add]


def writer(tag: str, delay: float):
    async def write(state: S) -> S:
        await asyncio.sleep(delay)
        return {"log": [tag], "total": 1, "last": tag}

    write.__name__ = f"write_{tag}"
    return write


async def test_branch_updates_join_in_branch_order_whatever_finishes_first(engine: Engine) -> None:
    wf = Workflow("par", state=S)
    # c finishes first, a last: the join order is still a, b, c
    wf.parallel("fan", [writer("a", 0.03), writer("b", 0.02), writer("c", 0.0)])
    result = await engine.run(wf, {"log": ["start"], "total": 0})
    assert result.ok
    assert result.state["log"] == ["start", "a", "b", "c"]
    assert result.state["total"] == 3
    assert result.state["last"] == "c", "last-write-wins applies in branch order"


async def test_branches_see_the_state_before_the_fork_not_each_other(engine: Engine) -> None:
    wf = Workflow("isolated", state=S)
    seen: dict[str, list[str]] = {}

    def first(state: S) -> S:
        seen["first"] = list(state["log"])
        return {"log": ["first"]}

    def second(state: S) -> S:
        seen["second_before"] = list(state["log"])
        return {"log": ["second"]}

    def third(state: S) -> S:
        seen["third"] = list(state["log"])
        return {"log": ["third"]}

    wf.parallel("fan", [[first, third], second])
    result = await engine.run(wf, {"log": []})
    assert seen == {"first": [], "second_before": [], "third": ["first"]}
    assert result.state["log"] == ["first", "third", "second"]


async def test_max_concurrent_limits_branches(engine: Engine) -> None:
    probe = Peak()
    busy = probe.busy

    branches = []
    for i in range(6):

        async def b(state: S) -> None:
            await busy(state)

        b.__name__ = f"b{i}"
        branches.append(b)
    wf = Workflow("limited", state=S)
    wf.parallel("fan", branches, max_concurrent=2)
    assert (await engine.run(wf, {})).ok
    assert probe.peak == 2


async def test_fail_fast_cancels_the_other_branches(engine: Engine) -> None:
    cancelled = asyncio.Event()

    async def slow(state: S) -> S:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    async def boom(state: S) -> S:
        raise RuntimeError("payment service down")

    wf = Workflow("ff", state=S)
    wf.parallel("fan", [slow, boom])
    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert result.error == "step 'fan[1]/boom' failed: payment service down"
    assert cancelled.is_set()


async def test_collect_runs_every_branch_then_reports_all_errors(engine: Engine) -> None:
    def ok(state: S) -> S:
        return {"log": ["ok"]}

    def bad1(state: S) -> S:
        raise ValueError("first")

    def bad2(state: S) -> S:
        raise ValueError("second")

    wf = Workflow("collect", state=S)
    wf.parallel("fan", [bad1, ok, bad2], on_failure="collect")
    result = await engine.run(wf, {})
    assert result.status is WorkflowStatus.FAILED
    assert "2 of 3 branches failed" in (result.error or "")
    assert "fan[0]/bad1" in result.error and "fan[2]/bad2" in result.error
    events = await engine.store.read_events(result.run_id)
    assert any(e.type == "step_completed" and e.path == "fan[1]/ok" for e in events)


async def test_map_fans_out_over_a_runtime_list_and_joins_in_item_order(engine: Engine) -> None:
    async def square(state: S, ctx: ExecutionContext) -> S:
        await asyncio.sleep(0.001 * (10 - ctx.item))  # later items finish first
        return {"squares": [ctx.item * ctx.item]}

    wf = Workflow("map", state=S)
    wf.map("each", items="items", branch=square, max_concurrent=4)
    result = await engine.run(wf, {"items": list(range(10))})
    assert result.ok
    assert result.state["squares"] == [i * i for i in range(10)]


async def test_map_over_an_empty_list_completes(engine: Engine) -> None:
    def never(state: S) -> S:
        raise AssertionError("no items, no calls")

    wf = Workflow("empty_map", state=S)
    wf.map("each", items="items", branch=never)
    result = await engine.run(wf, {"items": []})
    assert result.ok


async def test_map_items_that_are_not_a_list_fail_the_step(engine: Engine) -> None:
    def f(state: S) -> None:
        return None

    wf = Workflow("bad_items", state=dict)
    wf.map("each", items="items", branch=f)
    result = await engine.run(wf, {"items": 5})
    assert result.status is WorkflowStatus.FAILED
    assert "map items must be a list, got int" in (result.error or "")


async def test_map_branch_idempotency_keys_differ_per_item(engine: Engine) -> None:
    keys: list[str] = []

    def record(state: S, ctx: ExecutionContext) -> None:
        keys.append(ctx.idempotency_key)

    wf = Workflow("keys", state=S)
    wf.map("each", items="items", branch=record)
    result = await engine.run(wf, {"items": [1, 2, 3]})
    assert sorted(keys) == [f"{result.run_id}:each[{i}]/record" for i in range(3)]
