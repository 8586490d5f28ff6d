"""ORCHESTRATOR and WORKER: planning at run time, workers chosen by capability, fan-out under
max_concurrent, dependencies, failures retried then reported or failing the step, synthesis,
agent workers, and a resume that redoes no finished subtask."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from cadenza import (
    DefinitionError,
    Engine,
    ExecutionContext,
    MemoryStore,
    ScriptedModel,
    Workflow,
    WorkflowStatus,
    tool,
)
from cadenza.agents import run_usage
from cadenza.graph.ir import Step, StepKind
from tests.probes import Peak


def plan_of(*subtasks: tuple[str, str] | tuple[str, str, list[str]]) -> Any:
    def planner(state: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for s in subtasks:
            item: dict[str, Any] = {"capability": s[0], "instructions": s[1]}
            if len(s) == 3:
                item["depends_on"] = s[2]
            out.append(item)
        return out

    return planner


async def test_subtasks_go_to_the_worker_of_their_capability(engine: Engine) -> None:
    seen: list[tuple[str, str]] = []

    def research(state: dict[str, Any], ctx: ExecutionContext) -> str:
        seen.append(("research", ctx.item["instructions"]))
        return f"facts about {ctx.item['instructions']}"

    async def write(state: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
        seen.append(("writing", ctx.item["instructions"]))
        return {"draft": f"{ctx.item['task']}: " + " / ".join(ctx.item["inputs"].values())}

    def combine(state: dict[str, Any], results: list[dict[str, Any]]) -> str:
        return results[-1]["result"]["draft"]

    wf = Workflow("report")
    wf.worker("researcher", capability="research", handler=research)
    wf.worker("writer", capability="writing", handler=write)
    wf.orchestrator(
        "team",
        planner=plan_of(
            ("research", "tides"), ("research", "moons"), ("writing", "summary", ["1", "2"])
        ),
        synthesizer=combine,
    )
    result = await engine.run(wf, {"task": "Why tides?"})
    assert result.ok, result.error
    assert result.state["answer"] == "Why tides?: facts about tides / facts about moons"
    assert [(r["id"], r["worker"], r["status"]) for r in result.state["results"]] == [
        ("1", "researcher", "ok"),
        ("2", "researcher", "ok"),
        ("3", "writer", "ok"),
    ]
    assert seen[-1] == ("writing", "summary"), "the writer ran after what it depends on"
    completed = [
        e.path for e in await engine.store.read_events(result.run_id) if e.type == "step_completed"
    ]
    assert completed[0] == "team/plan"
    assert set(completed[1:4]) == {"team[0]/researcher", "team[1]/researcher", "team[2]/writer"}
    assert completed[4:] == ["team/synthesize", "team"]


async def test_subtasks_run_concurrently_up_to_max_concurrent(engine: Engine) -> None:
    peak = Peak()

    async def busy(state: dict[str, Any], ctx: ExecutionContext) -> int:
        await peak.busy(state)
        return ctx.index

    wf = Workflow("wide")
    wf.worker("w", capability="work", handler=busy)
    wf.orchestrator(
        "fan", planner=plan_of(*[("work", f"part {i}") for i in range(6)]), max_concurrent=2
    )
    result = await engine.run(wf, {"task": "x"})
    assert result.ok, result.error
    assert peak.peak == 2
    assert [r["result"] for r in result.state["results"]] == [0, 1, 2, 3, 4, 5]
    assert "answer" not in result.state, "no synthesizer, no answer"


def flaky_workflow(policy: str, calls: Counter[str]) -> Workflow:
    def analyse(state: dict[str, Any], ctx: ExecutionContext) -> str:
        calls[ctx.item["instructions"]] += 1
        if ctx.item["instructions"] == "broken":
            raise ConnectionError("analysis service unavailable")
        return "fine"

    def write(state: dict[str, Any], ctx: ExecutionContext) -> str:
        calls["write"] += 1
        return "written"

    def combine(state: dict[str, Any], results: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['id']}:{r['status']}" for r in results)

    wf = Workflow(f"flaky_{policy}")
    wf.worker("analyst", capability="analysis", handler=analyse, retries=2)
    wf.worker("writer", capability="writing", handler=write)
    wf.orchestrator(
        "team",
        planner=plan_of(
            ("analysis", "works"), ("analysis", "broken"), ("writing", "sum up", ["2"])
        ),
        synthesizer=combine,
        on_subtask_failure=policy,
    )
    return wf


async def test_a_failing_subtask_is_retried_then_reported(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    result = await engine.run(flaky_workflow("report", calls), {"task": "t"})
    assert result.ok, result.error
    assert calls["broken"] == 3, "retried per the worker's policy"
    assert calls["write"] == 0, "what depends on a failed subtask does not run"
    assert result.state["answer"] == "1:ok, 2:failed, 3:failed"
    failed = result.state["results"][1]
    assert failed["error"] == "analysis service unavailable"
    assert result.state["results"][2]["error"] == "not run: it depends on subtask 2, which failed"
    events = await engine.store.read_events(result.run_id)
    attempts = [
        e.attempt for e in events if e.type == "step_failed" and e.path == "team[1]/analyst"
    ]
    assert attempts == [1, 2, 3]


async def test_a_failing_subtask_fails_the_step_by_default(engine: Engine) -> None:
    calls: Counter[str] = Counter()
    result = await engine.run(flaky_workflow("fail", calls), {"task": "t"})
    assert result.status is WorkflowStatus.FAILED
    assert result.error == (
        "step 'team' failed: subtask 2 (analysis) failed: analysis service unavailable"
    )
    assert calls["broken"] == 3


async def test_model_planner_agent_workers_and_model_synthesizer(engine: Engine) -> None:
    planner = ScriptedModel(
        [
            {
                "output": {
                    "subtasks": [
                        {"id": "r", "capability": "research", "instructions": "find tides"},
                        {
                            "id": "w",
                            "capability": "writing",
                            "instructions": "write",
                            "depends_on": ["r"],
                        },
                    ]
                }
            }
        ],
        name="planner",
    )

    @tool
    def search(query: str) -> list[str]:
        """Search the notes."""
        return [f"note on {query}"]

    researcher = ScriptedModel(
        rules=[
            (r"^find tides", {"tool_calls": [{"name": "search", "arguments": {"query": "tides"}}]}),
            (r"note on tides", "Tides follow the moon."),
        ],
        name="researcher",
    )
    synthesizer = ScriptedModel(rules=[lambda m: "Final: " + m[-1].content.split("\n")[-1]])

    def write(state: dict[str, Any], ctx: ExecutionContext) -> str:
        return "Draft: " + ctx.item["inputs"]["r"]

    wf = Workflow("rag")
    wf.worker(
        "researcher",
        capability="research",
        model=researcher,
        tools=[search],
        system="You research.",
        description="finds facts in the notes",
    )
    wf.worker("writer", capability="writing", handler=write, description="writes prose")
    wf.orchestrator("team", planner=planner, synthesizer=synthesizer)
    result = await engine.run(wf, {"task": "Explain tides"})
    assert result.ok, result.error
    assert result.state["results"][0]["result"] == "Tides follow the moon."
    assert result.state["answer"] == "Final: Draft: Tides follow the moon."
    plan_call = planner.calls[0]
    schema = plan_call.output.model_json_schema()  # type: ignore[union-attr]
    assert "'enum': ['research', 'writing']" in repr(schema), "capabilities offered as an enum"
    assert "- research: finds facts in the notes" in plan_call.messages[0].content
    assert plan_call.messages[1].content == "Explain tides"
    asked = researcher.calls[0].messages
    assert [m.role for m in asked] == ["system", "user"]
    assert asked[1].content == "find tides\n\nOverall task: Explain tides"
    events = await engine.store.read_events(result.run_id)
    paths = [e.path for e in events if e.type == "step_completed"]
    assert "team[0]/researcher#1/model" in paths and "team[0]/researcher#2/model" in paths
    assert run_usage(events).by_model.keys() == {"planner", "researcher", "scripted"}


async def test_a_bad_plan_fails_the_step_with_what_is_wrong(engine: Engine) -> None:
    wf = Workflow("badplan")
    wf.worker("w", capability="work", handler=lambda state, ctx: 1)
    wf.orchestrator("team", planner=plan_of(("dance", "now")))
    result = await engine.run(wf, {"task": "x"})
    assert result.status is WorkflowStatus.FAILED
    assert result.error == (
        "step 'team/plan' failed: subtask 1 asks for capability 'dance', which no worker "
        "declares (capabilities: work)"
    )


async def test_a_resumed_orchestrator_redoes_no_finished_subtask() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    calls: Counter[str] = Counter()

    def build(block: bool) -> Workflow:
        async def work(state: dict[str, Any], ctx: ExecutionContext) -> str:
            calls[ctx.item["instructions"]] += 1
            if block and ctx.item["instructions"] == "slow":
                await gate.wait()  # the process "dies" here
            return ctx.item["instructions"].upper()

        def planner(state: dict[str, Any]) -> list[dict[str, Any]]:
            calls["plan"] += 1
            return [{"capability": "work", "instructions": i} for i in ("a", "slow", "b")]

        wf = Workflow("resumable")
        wf.worker("w", capability="work", handler=work)
        wf.orchestrator("team", planner=planner, max_concurrent=3)
        return wf

    async with Engine(store) as first:
        run_id = await first.start(build(block=True), {"task": "x"})
        for _ in range(500):
            done = [e.path for e in await store.read_events(run_id) if e.type == "step_completed"]
            if len(done) == 3:  # the plan and two subtasks
                break
            await asyncio.sleep(0.01)
        assert sorted(done) == ["team/plan", "team[0]/w", "team[2]/w"]
    async with Engine(store) as second:
        result = await second.resume(run_id, build(block=False))
    assert result.ok, result.error
    assert [r["result"] for r in result.state["results"]] == ["A", "SLOW", "B"]
    assert calls == Counter({"plan": 1, "a": 1, "b": 1, "slow": 2})


def test_bad_orchestrator_definitions_are_refused() -> None:
    wf = Workflow("bad")

    def handler(state: dict[str, Any], ctx: ExecutionContext) -> str:
        return ""

    wf.worker("a", capability="x", handler=handler)
    wf.worker("b", capability="x", handler=handler)
    with pytest.raises(DefinitionError, match="both declare capability 'x'"):
        wf.orchestrator("o", planner=plan_of())
    with pytest.raises(DefinitionError, match="no worker named 'c'"):
        wf.orchestrator("o", planner=plan_of(), workers=["c"])
    with pytest.raises(DefinitionError, match=r"a handler \(a function\) or a model"):
        wf.worker("d", capability="y")
    with pytest.raises(DefinitionError, match=r"takes \(state, ctx\)"):
        wf.worker("e", capability="z", handler=lambda state: 1)
    with pytest.raises(DefinitionError, match=r"synthesizer function takes \(state, results"):
        wf.orchestrator("o", planner=plan_of(), workers=["a"], synthesizer=lambda s: s)
    with pytest.raises(DefinitionError, match="an orchestrator needs workers"):
        Workflow("none").orchestrator("o", planner=plan_of())

    flow = Workflow("flow")
    flow.add(Step(name="loose", kind=StepKind.WORKER))
    with pytest.raises(DefinitionError, match="a WORKER executes subtasks of an ORCHESTRATOR"):
        flow.compile()
