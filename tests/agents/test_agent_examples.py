"""The agent examples run offline (scripted models), in process and through the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cadenza import Engine, ExecutionContext, MemoryStore, WorkflowConfiguration
from cadenza.agents import run_usage
from cadenza.core.ids import RunId
from tests.agents.protocol_servers import openai_completion, openai_server
from tests.processes import SRC

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENZA_MODEL", raising=False)


def load(name: str) -> ModuleType:
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"agent_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CADENZA_MODEL", "CADENZA_DB")}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run(
        [sys.executable, "-m", "cadenza.cli", *args, "--db", str(tmp_path / "runs.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_support_agent_refunds_a_broken_order_once() -> None:
    module = load("support_agent")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(
            module.workflow, {"question": "Order 1042 arrived broken, I want my money back"}
        )
        lookups = await engine.run(module.workflow, {"question": "Where are 1043 and 9999?"})
    assert result.ok, result.error
    assert result.state["answer"] == ("I have refunded $39.00 for order 1042 (refund rf_0001).")
    assert [r["order_id"] for r in module.LEDGER.refunds.values()] == [1042]
    assert lookups.ok, lookups.error
    assert lookups.state["answer"] == (
        "Order 1043 (tea sampler) is shipped, arriving in 2 days. There is no order 9999."
    )


async def test_the_refund_tool_is_idempotent_by_key() -> None:
    module = load("support_agent")
    ctx = ExecutionContext(
        run_id=RunId("r"),
        workflow="support_agent",
        step="agent",
        path="agent#2/refund:call_1",
        attempt=1,
        config=WorkflowConfiguration(),
    )
    arguments = {"order_id": 1044, "amount": 89.0, "reason": "damaged"}
    first = await module.refund.run(arguments, ctx)
    again = await module.refund.run(arguments, ctx)
    assert first == again and json.loads(first.content)["refund_id"] == "rf_0001"
    assert len(module.LEDGER.refunds) == 1
    refused = await module.refund.run({**arguments, "order_id": 1043}, ctx)
    assert refused.error and "only delivered orders refund" in refused.content


def test_the_support_agent_runs_from_the_command_line(tmp_path: Path) -> None:
    question = json.dumps({"question": "Refund order 1044 please, it is damaged"})
    ran = cli(tmp_path, "run", str(EXAMPLES / "support_agent.py"), "--input", question, "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["state"]["answer"] == "I have refunded $89.00 for order 1044 (refund rf_0001)."
    shown = cli(tmp_path, "runs", "show", result["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    usage = json.loads(shown.stdout)["usage"]
    assert usage["model_calls"] == 3 and usage["by_model"].keys() == {"scripted:support"}
    text = cli(tmp_path, "runs", "show", result["run_id"])
    assert "model usage: 3 model calls, " in text.stdout


async def test_the_research_assistant_plans_researches_and_synthesises() -> None:
    module = load("research_assistant")
    task = "How do batteries help solar and wind power?"
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(module.workflow, {"task": task})
        events = await engine.store.read_events(result.run_id)
    assert result.ok, result.error
    results = result.state["results"]
    assert [(r["id"], r["worker"], r["status"]) for r in results] == [
        ("r1", "researcher", "ok"),
        ("r2", "researcher", "ok"),
        ("r3", "researcher", "ok"),
        ("a", "analyst", "ok"),
        ("w", "writer", "ok"),
    ]
    assert {r["instructions"] for r in results[:3]} == {
        "Research battery storage",
        "Research solar power",
        "Research wind power",
    }
    assert results[3]["result"]["sources"] == ["solar.md", "storage.md", "wind.md"]
    answer = result.state["answer"]
    assert "grid battery discharges for two to four hours" in answer
    assert answer.endswith("Sources: solar.md, storage.md, wind.md")
    reads = [e.data["reply"]["content"] for e in events if e.data.get("tool") == "read_doc"]
    assert len(reads) == 3 and all(r.startswith("# ") for r in reads)


def test_the_research_assistant_runs_from_the_command_line(tmp_path: Path) -> None:
    task = json.dumps({"task": "How do batteries help solar and wind power?"})
    ran = cli(tmp_path, "run", str(EXAMPLES / "research_assistant.py"), "--input", task, "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["state"]["answer"].endswith(
        "Sources: solar.md, storage.md, wind.md"
    )


async def test_the_support_agent_speaks_to_an_openai_compatible_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With CADENZA_MODEL set, the example runs on the OpenAI adapter, here against a local
    server speaking the chat-completions protocol (through the real SDK)."""
    with openai_server() as server:
        monkeypatch.setenv("CADENZA_MODEL", "openai:gpt-4o-mini")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.delenv("CADENZA_MODEL_PRICING", raising=False)
        module = load("support_agent")
        lookup = {"id": "call_a", "type": "function"}
        lookup["function"] = {"name": "lookup_order", "arguments": '{"order_id": 1044}'}
        pay = {"id": "call_b", "type": "function"}
        pay["function"] = {
            "name": "refund",
            "arguments": '{"order_id": 1044, "amount": 89, "reason": "damaged"}',
        }
        server.reply(
            openai_completion(tool_calls=[lookup], prompt_tokens=300, completion_tokens=20),
            openai_completion(tool_calls=[pay], prompt_tokens=400, completion_tokens=30),
            openai_completion("Refunded $89.00 (rf_0001).", prompt_tokens=500, completion_tokens=9),
        )
        async with Engine(MemoryStore()) as engine:
            result = await engine.run(module.workflow, {"question": "1044 is broken, refund"})
            events = await engine.store.read_events(result.run_id)
    assert result.ok, result.error
    assert result.state["answer"] == "Refunded $89.00 (rf_0001)."
    first = server.requests[0].body
    assert first["model"] == "gpt-4o-mini"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]}
    assert tools["refund"]["required"] == ["order_id", "amount", "reason"]
    assert "ctx" not in tools["refund"]["properties"]
    last = server.requests[-1].body["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert json.loads(last[-1]["content"])["refund_id"] == "rf_0001"
    assert len(server.requests) == 3
    usage = run_usage(events)
    assert (usage.model_calls, usage.input_tokens, usage.output_tokens) == (3, 1200, 59)
    assert usage.cost == pytest.approx((1200 * 0.15 + 59 * 0.60) / 1_000_000)
