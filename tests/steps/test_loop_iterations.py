"""Long loops: a finished iteration is folded out of the run's progress (so progress and
snapshots stay the size of the live state), an iteration ends in one append, and nothing
that reads the log (resume, nesting, signals, fork, timelines) notices the difference."""

from __future__ import annotations

import asyncio
import operator
from collections import Counter
from typing import Annotated, Any, TypedDict

import pydantic_core
import pytest

from cadenza import CadenzaError, Engine, ExecutionContext, MemoryStore, Workflow, WorkflowStatus
from cadenza.core.events import Event
from cadenza.runtime import run as run_module
from cadenza.runtime.progress import Progress
from cadenza.runtime.timeline import timeline
from cadenza.store.base import Snapshot


class S(TypedDict, total=False):
    n: int
    i: int
    j: int
    got: Annotated[list[Any], operator.add]
    last: Any  # a signal's payload
    log: Annotated[list[str], operator.add]


class Recording(MemoryStore):
    """A memory store that keeps what each append carried: its events and its snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[tuple[str, str]]] = []
        self.snapshots: list[Snapshot] = []

    async def append(self, run_id: Any, events: Any, **kw: Any) -> None:
        self.batches.append([(str(e.type), e.path) for e in events])
        if kw.get("snapshot") is not None:
            self.snapshots.append(kw["snapshot"])
        await super().append(run_id, events, **kw)


def count(state: S) -> S:
    return {"n": state.get("n", 0) + 1}


def add(state: S, ctx: ExecutionContext) -> S:
    return {"log": [ctx.path]}


def fold(wf: Workflow, events: list[Event]) -> Progress:
    return Progress(wf.compile().schema.reducers).apply_all(events)


async def test_progress_and_snapshots_stay_the_size_of_the_live_state() -> None:
    store = Recording()
    wf = Workflow("long", state=S)
    wf.loop("lp", body=[add, count], until="n >= 2000", max_iterations=2000)
    async with Engine(store) as engine:
        result = await engine.run(wf, {"n": 0})
        events = await store.read_events(result.run_id)
    assert result.ok and result.state["n"] == 2000
    sizes = [
        len(pydantic_core.to_json([s.state, s.buffers]))
        for s in store.snapshots
        if "done" in s.state  # not the final one (state and status only)
    ]
    assert len(sizes) >= 20
    # The log keeps every iteration (its state grows: ``log``), the progress does not:
    # each snapshot is the state plus a handful of records, whatever the iteration.
    values = [len(pydantic_core.to_json(s.state["values"])) for s in store.snapshots[:-1]]
    overhead = [size - v for size, v in zip(sizes, values, strict=True)]
    assert max(overhead) - min(overhead) < 100, overhead
    progress = fold(wf, events)
    assert not [p for p in progress.done if "#" in p], "finished iterations are folded"
    assert progress.loops == {} and len(progress.inside) == 0
    assert sum(e.type == "loop_iteration" for e in events) == 2000


async def test_an_iteration_ends_in_one_append() -> None:
    store = Recording()
    wf = Workflow("appends", state=S)
    wf.loop("lp", body=count, until="n >= 50", max_iterations=60)
    async with Engine(store) as engine:
        result = await engine.run(wf, {"n": 0})
    assert result.ok
    in_loop = [b for b in store.batches if any("#" in path for _, path in b)]
    assert len(in_loop) == 50, "one append per iteration"
    for k, batch in enumerate(in_loop[:-1], start=1):
        assert batch == [("step_completed", f"lp#{k}/count"), ("loop_iteration", f"lp#{k}")]
    assert in_loop[-1] == [
        ("step_completed", "lp#50/count"),
        ("loop_iteration", "lp#50"),
        ("step_completed", "lp"),
    ]


@pytest.mark.parametrize("every", [1, 3, 7])
async def test_a_fold_resumed_from_any_snapshot_equals_the_fold_from_scratch(every: int) -> None:
    wf = nested_workflow([])
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.ok
    whole = fold(wf, events).snapshot()
    reducers = wf.compile().schema.reducers
    for cut in range(1, len(events), every):
        snapshot = fold(wf, events[:cut]).snapshot()
        resumed = Progress.restore(reducers, snapshot).apply_all(events[cut:]).snapshot()
        assert (resumed.state, resumed.buffers) == (whole.state, whole.buffers), cut


# -- nesting ---------------------------------------------------------------------------------


def nested_workflow(calls: list[str], gate: asyncio.Event | None = None, stop: int = 0) -> Workflow:
    """Two parallel branches, each an outer loop whose body is a sub-workflow holding an inner
    loop and a step after it."""

    async def tick(state: S, ctx: ExecutionContext) -> S:
        calls.append(ctx.path)
        if gate is not None and len(calls) > stop:
            await gate.wait()  # the process "dies" here
        return {"j": state.get("j", 0) + 1, "log": [ctx.path]}

    def next_i(state: S) -> S:
        return {"i": state.get("i", 0) + 1, "j": 0}

    body = Workflow("outer_body", state=S)
    body.loop("inner", body=tick, until="j >= 3", max_iterations=3)
    body.task(next_i)
    branches = []
    for name in ("left", "right"):
        branch = Workflow(name, state=S)
        branch.loop("outer", body=body, until="i >= 4", max_iterations=4)
        branches.append(branch)
    wf = Workflow("nested", state=S)
    wf.parallel("fan", branches)
    return wf


NESTED_PATHS = sorted(
    f"fan[{b}]/outer#{i}/inner#{j}/tick" for b in (0, 1) for i in range(1, 5) for j in range(1, 4)
)


async def test_nested_loops_in_parallel_branches() -> None:
    calls: list[str] = []
    wf = nested_workflow(calls)
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
        events = await engine.store.read_events(result.run_id)
    assert result.ok, result.error
    assert sorted(result.state["log"]) == sorted(calls) == NESTED_PATHS
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values())
    assert not [p for p in fold(wf, events).done if "#" in p]


@pytest.mark.parametrize("stop", [0, 5, 13, 22])
async def test_nested_loops_resume_where_they_stopped(
    stop: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_module, "SNAPSHOT_EVERY", 4)
    store = MemoryStore()
    calls: list[str] = []
    gate = asyncio.Event()
    first = Engine(store)
    run_id = await first.start(nested_workflow(calls, gate, stop), {})
    while len(calls) <= stop:
        await asyncio.sleep(0)
    await first.close()
    gate.set()
    async with Engine(store) as second:
        resumed = await second.resume(run_id, nested_workflow(calls))
        events = await store.read_events(run_id)
    assert resumed.ok, resumed.error
    assert sorted(resumed.state["log"]) == NESTED_PATHS
    # Only the calls in flight when the first engine stopped ran twice (same path, same key).
    repeated = [path for path, n in Counter(calls).items() if n > 1]
    assert len(repeated) <= 2 and set(calls) == set(NESTED_PATHS)
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values())
    turns = Counter(e.path for e in events if e.type == "loop_iteration")
    assert all(n == 1 for n in turns.values()) and len(turns) == 2 * (4 + 4 * 3)


@pytest.mark.parametrize("two_ends", [False, True])
async def test_a_loop_whose_body_is_a_sub_workflow(two_ends: bool) -> None:
    """A body graph with one last step stores it with the iteration's decision; one with two
    ends (no step is last) stores the decision on its own."""
    store = Recording()
    body = Workflow("body", state=S)
    body.task(count, name="first")
    body.task(add, name="small")
    body.task(add, name="big")
    body.conditional("route", {"big": "n > 2"}, default="small")
    body.edge("first", "route")
    if not two_ends:
        body.task(add, name="last")
        body.edge(["small", "big"], "last")
    wf = Workflow("sub", state=S)
    wf.loop("lp", body=body, until="n >= 4", max_iterations=4)
    async with Engine(store) as engine:
        result = await engine.run(wf, {})
    assert result.ok, result.error
    routed = ["small", "small", "big", "big"]
    expected = [f"lp#{k}/{name}" for k, name in enumerate(routed, start=1)]
    if not two_ends:
        expected = [p for k, r in enumerate(expected, 1) for p in (r, f"lp#{k}/last")]
    assert result.state["log"] == expected
    decisions = [b for b in store.batches if ("loop_iteration", "lp#2") in b]
    assert decisions == [
        [("loop_iteration", "lp#2")]
        if two_ends
        else [("step_completed", "lp#2/last"), ("loop_iteration", "lp#2")]
    ]


# -- signals, fork, timelines ------------------------------------------------------------


async def test_a_signal_taken_in_a_finished_iteration_is_not_taken_again() -> None:
    wf = Workflow("signalled", state=S)
    body = Workflow("body", state=S)
    body.wait("go", signal="go", output="last")
    body.task(lambda s: {"got": [s["last"]], "n": s.get("n", 0) + 1}, name="take")
    wf.loop("lp", body=body, until="n >= 3", max_iterations=3)
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(wf, {})
        assert waiting.status is WorkflowStatus.RUNNING
        once = await engine.signal(waiting.run_id, "go", 1)
        assert once.status is WorkflowStatus.RUNNING, "iteration 2 waits for a signal of its own"
        assert once.state["got"] == [1]
        await engine.signal(waiting.run_id, "go", 2)
        done = await engine.signal(waiting.run_id, "go", 3)
    assert done.ok and done.state["got"] == [1, 2, 3]


def forkable(calls: list[str]) -> Workflow:
    def work(state: S, ctx: ExecutionContext) -> S:
        calls.append(ctx.path)
        return {"log": [f"{ctx.path}:{state.get('n', 0)}"]}

    def tally(state: S, ctx: ExecutionContext) -> S:
        calls.append(ctx.path)
        return {"n": state.get("n", 0) + 1}

    wf = Workflow("forkable", state=S)
    wf.loop("lp", body=[work, tally], until="n >= 5", max_iterations=5)
    wf.task(add, name="after")
    return wf


@pytest.mark.parametrize(
    ("after", "runs"),
    [
        ("lp#3/work", ["lp#3/tally", "lp#4/work", "lp#4/tally", "lp#5/work", "lp#5/tally"]),
        ("lp#3/tally", ["lp#4/work", "lp#4/tally", "lp#5/work", "lp#5/tally"]),
        ("lp#3", ["lp#4/work", "lp#4/tally", "lp#5/work", "lp#5/tally"]),
        ("lp#5", []),
    ],
)
async def test_fork_from_inside_a_loop_goes_on_from_there(after: str, runs: list[str]) -> None:
    calls: list[str] = []
    async with Engine(MemoryStore()) as engine:
        first = await engine.run(forkable(calls), {})
        calls.clear()
        forked = await engine.fork(first.run_id, after=after, workflow=forkable(calls))
    assert forked.ok, forked.error
    assert calls == runs
    assert forked.state == first.state


async def test_fork_from_a_step_no_iteration_reached_is_a_short_clear_error() -> None:
    wf = Workflow("counted", state=S)
    wf.loop("lp", body=count, until="n >= 300", max_iterations=300)
    async with Engine(MemoryStore()) as engine:
        first = await engine.run(wf, {})
        with pytest.raises(CadenzaError) as caught:
            await engine.fork(first.run_id, after="lp#301/count")
    message = str(caught.value)
    assert "step 'lp#301/count' has no recorded completion" in message
    assert message.endswith("lp#20/count, ... (301 in all)") and len(message) < 500


async def test_the_timeline_shows_every_iteration() -> None:
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(forkable([]), {})
        events = await engine.store.read_events(result.run_id)
    rows = {row.path: row for row in timeline(events)}
    for k in range(1, 6):
        for path in (f"lp#{k}/work", f"lp#{k}/tally", f"lp#{k}"):
            assert rows[path].status == "completed"
        last, decision = rows[f"lp#{k}/tally"], rows[f"lp#{k}"]
        assert last.finished_at is not None and decision.finished_at is not None
        assert last.finished_at <= decision.finished_at
    assert rows["lp"].status == rows["after"].status == "completed"
