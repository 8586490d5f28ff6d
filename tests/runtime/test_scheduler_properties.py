"""The dataflow scheduler against a reference evaluation, on random graphs: every step that
should run runs exactly once, after all of its predecessors, and nothing else runs."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza import Engine, MemoryStore, Workflow


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=10))
    edges: set[tuple[int, int]] = set()
    for j in range(1, n):
        parents = draw(st.sets(st.integers(min_value=0, max_value=j - 1), min_size=1, max_size=3))
        edges.update((i, j) for i in parents)
    routers = draw(st.sets(st.integers(min_value=0, max_value=n - 1)))
    chosen = {}
    for i in routers:
        succs = sorted(j for a, j in edges if a == i)
        chosen[i] = draw(st.lists(st.sampled_from(succs), unique=True)) if succs else []
    delays = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return {"n": n, "edges": edges, "chosen": chosen, "delays": delays}


def reference(g: dict[str, Any]) -> set[int]:
    ran = {0}
    for j in range(1, g["n"]):
        for i, k in g["edges"]:
            if k == j and i in ran and (i not in g["chosen"] or j in g["chosen"][i]):
                ran.add(j)
    return ran


def build(g: dict[str, Any], trace: list[tuple[str, int]]) -> Workflow:
    wf = Workflow("random", state=dict)

    def task(i: int) -> Any:
        async def run(state: dict[str, Any]) -> None:
            trace.append(("start", i))
            for _ in range(g["delays"][i]):
                await asyncio.sleep(0)
            trace.append(("end", i))

        run.__name__ = f"s{i}"
        return run

    for i in range(g["n"]):
        if i in g["chosen"]:
            succs = sorted(j for a, j in g["edges"] if a == i)
            picked = [f"s{j}" for j in g["chosen"][i]]

            def route(state: dict[str, Any], picked: list[str] = picked, i: int = i) -> list[str]:
                trace.append(("start", i))
                trace.append(("end", i))
                return picked

            wf.conditional(f"s{i}", [f"s{j}" for j in succs], router=route)
        else:
            wf.task(task(i), name=f"s{i}")
    for i, j in sorted(g["edges"]):
        if i not in g["chosen"]:
            wf.edge(f"s{i}", f"s{j}")
    wf.start("s0")
    return wf


@settings(max_examples=150, deadline=None)
@given(graphs())
def test_dataflow_matches_the_reference_evaluation(g: dict[str, Any]) -> None:
    trace: list[tuple[str, int]] = []

    async def main() -> None:
        async with Engine(MemoryStore()) as engine:
            result = await engine.run(build(g, trace), {})
            assert result.ok, result.error

    asyncio.run(main())
    started = [i for kind, i in trace if kind == "start"]
    assert sorted(started) == sorted(reference(g)), "exactly the reachable steps, once each"
    position = {(kind, i): k for k, (kind, i) in enumerate(trace)}
    for i, j in g["edges"]:
        if ("start", j) in position and ("end", i) in position:
            assert position[("end", i)] < position[("start", j)], f"s{j} started before s{i} ended"
