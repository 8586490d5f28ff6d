"""REACT, ORCHESTRATOR and WORKER in workflow files: models, tools, planners and
synthesizers by name, and every problem located in the file."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cadenza import (
    Engine,
    ExecutionContext,
    HandlerRegistry,
    MemoryStore,
    ScriptedModel,
    SpecError,
    tool,
)
from cadenza.agents import register_model
from cadenza.graph.spec_compile import load_workflow_file

_modules = itertools.count()


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler
    @tool
    def lookup_order(order_id: int) -> dict[str, Any]:
        """Find an order."""
        return {"order_id": order_id, "status": "shipped"}

    @reg.handler
    def plan(state: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"capability": "research", "instructions": f"look up {state['task']}"},
            {"capability": "writing", "instructions": "write it up", "depends_on": ["1"]},
        ]

    @reg.handler
    def write(state: dict[str, Any], ctx: ExecutionContext) -> str:
        return "report: " + ctx.item["inputs"]["1"]

    return reg


def handler_module(tmp_path: Path) -> str:
    """A module next to the file, for tools named by import path."""
    name = f"spec_agent_tools_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            '''
            def search(query: str) -> list[str]:
                """Search the notes.

                Args:
                    query: What to look for.
                """
                return [f"a note on {query}"]
            '''
        )
    )
    return name


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


async def run(path: Path, values: dict[str, Any]) -> Any:
    workflow = load_workflow_file(path, registry=registry())
    async with Engine(MemoryStore()) as engine:
        return await engine.run(workflow, values)


async def test_react_with_a_scripted_model_file_and_tools_by_name(tmp_path: Path) -> None:
    module = handler_module(tmp_path)
    (tmp_path / "replies.json").write_text(
        json.dumps(
            {
                "script": [
                    {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": 4}}]},
                    {"tool_calls": [{"name": "search", "arguments": {"query": "returns"}}]},
                    "Order 4 shipped; see the returns note.",
                ]
            }
        )
    )
    path = write_spec(
        tmp_path,
        f"""
        name: support
        steps:
          - type: REACT
            name: agent
            model: scripted:replies.json
            tools: [lookup_order, "{module}:search"]
            system_prompt: You are support.
            max_iterations: 4
            input_key: question
            output: reply
        """,
    )
    workflow = load_workflow_file(path, registry=registry())
    step = workflow.compile().graph.steps["agent"]
    assert step.agent.max_steps == 4  # type: ignore[union-attr]
    assert [t.name for t in step.agent.tools] == ["lookup_order", "search"]  # type: ignore[union-attr]
    result = await run(path, {"question": "Where is order 4?"})
    assert result.ok, result.error
    assert result.state["reply"] == "Order 4 shipped; see the returns note."
    observations = [m["content"] for m in result.state["messages"] if m["role"] == "tool"]
    assert observations == ['{"order_id":4,"status":"shipped"}', '["a note on returns"]']


async def test_orchestrator_with_nested_workers_and_a_registered_model(tmp_path: Path) -> None:
    register_model(
        "spec_researcher",
        ScriptedModel(rules=[(r"^look up", "tides follow the moon")], name="spec_researcher"),
    )
    register_model(
        "spec_synth",
        ScriptedModel(rules=[lambda m: "summary of " + str(m[-1].content.count("[1]"))]),
    )
    path = write_spec(
        tmp_path,
        """
        name: research
        steps:
          - type: ORCHESTRATOR
            name: team
            planner: plan
            synthesizer: spec_synth
            max_concurrent: 2
            on_subtask_failure: report
            workers:
              - name: researcher
                capability: research
                model: spec_researcher
                system_prompt: You research.
              - type: WORKER
                name: writer
                capability: writing
                handler: write
                retry: 2
        """,
    )
    result = await run(path, {"task": "tides"})
    assert result.ok, result.error
    assert [r["result"] for r in result.state["results"]] == [
        "tides follow the moon",
        "report: tides follow the moon",
    ]
    assert result.state["answer"] == "summary of 1"


# fmt: off
WORKER = "{name: w, capability: c, handler: write}"
BAD: list[tuple[str, str, str]] = [
    ("worker outside an orchestrator",
     "  - {type: WORKER, name: w, capability: x, handler: write}\n",
     "a WORKER executes subtasks of an ORCHESTRATOR: put it in that ORCHESTRATOR's 'workers' "
     "list"),
    ("orchestrator without workers", "  - {type: ORCHESTRATOR, name: o, planner: plan}\n",
     "an ORCHESTRATOR needs 'workers'"),
    ("worker without capability",
     "  - {type: ORCHESTRATOR, name: o, planner: plan, workers: [{name: w, handler: write}]}\n",
     "a WORKER needs a 'capability'"),
    ("worker with handler and model",
     "  - {type: ORCHESTRATOR, name: o, planner: plan, workers: "
     "[{name: w, capability: c, handler: write, model: m}]}\n",
     "a WORKER needs a 'handler' or a 'model' (an agent), not both"),
    ("steps and iterations",
     "  - {type: REACT, name: a, model: m, max_steps: 2, max_iterations: 2}\n",
     "give 'max_steps' or 'max_iterations', not both"),
    ("unknown model", "  - {type: REACT, name: a, model: no_such_model_here}\n",
     "unknown model 'no_such_model_here' (registered: "),
    ("unknown provider", "  - {type: REACT, name: a, model: 'nowhere:big-model'}\n",
     "cannot load model 'nowhere:big-model': model spec 'nowhere:big-model' names an unknown "
     "provider"),
    ("unknown tool",
     "  - {type: REACT, name: a, model: 'scripted:replies.json', tools: [lookup_ordr]}\n",
     "no handler named 'lookup_ordr' — did you mean 'lookup_order'?"),
    ("planner that is nothing",
     f"  - {{type: ORCHESTRATOR, name: o, planner: nobody, workers: [{WORKER}]}}\n",
     "'nobody' is neither a handler"),
    ("agent field on a task", "  - {name: plan, tools: [x]}\n",
     "'tools' applies to REACT or WORKER steps, not SEQUENTIAL"),
]
# fmt: on


@pytest.mark.parametrize(("case", "body", "message"), BAD, ids=[b[0] for b in BAD])
def test_problems_are_located(tmp_path: Path, case: str, body: str, message: str) -> None:
    (tmp_path / "replies.json").write_text('["hi"]')
    path = write_spec(tmp_path, "name: demo\nsteps:\n" + body)
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    text = str(info.value)
    assert text.startswith(f"{path}:3:"), text
    assert message in text, text
