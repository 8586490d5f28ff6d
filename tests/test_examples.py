"""Examples are tests: every example workflow and the README's code run here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cadenza import Engine, MemoryStore, Workflow

ROOT = Path(__file__).parents[1]


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("inquiry", "category", "needle"),
    [
        ("I was charged twice for order 1234", "billing", "refunded in 3-5 business days"),
        ("The app shows an error when I try to login", "technical", "password reset link"),
        ("Where is my order #5521? The package has not arrived", "shipping", "Order 5521 left"),
        ("Do you have gift cards?", "general", "follow up within one day"),
    ],
)
async def test_customer_service_answers_sensibly(inquiry: str, category: str, needle: str) -> None:
    module = load(ROOT / "examples" / "customer_service.py")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(module.workflow, {"inquiry": inquiry})
    assert result.ok, result.error
    assert result.state["category"] == category
    assert needle in result.state["reply"]
    assert result.state["approved"] is True
    assert [d["part"] for d in result.state["drafts"]] == ["greeting", "resolution", "next_steps"]


async def test_readme_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## A workflow, in Python\n\n```python\n(.*?)```", readme, re.S)
    assert code is not None
    (tmp_path / "readme_example.py").write_text(code.group(1))
    wf = load(tmp_path / "readme_example.py").wf
    assert isinstance(wf, Workflow)
    async with Engine(MemoryStore()) as engine:
        big = await engine.run(wf, {"amount": 12500.004, "items": ["a", "b"]})
        small = await engine.run(wf, {"amount": 20, "items": []})
    assert big.ok and small.ok
    assert big.state == {
        "amount": 12500.0,
        "items": ["a", "b"],
        "packed": ["A", "B"],
        "review": "manual",
    }
    assert small.state["review"] == "auto"


async def test_a_reply_that_fails_a_rule_waits_for_a_support_lead() -> None:
    from cadenza import Directory, WorkflowStatus

    module = load(ROOT / "examples" / "customer_service.py")
    urgent = "URGENT: I need someone to call me back immediately"
    people = Directory({"sam": frozenset({"support_lead"})})
    async with Engine(MemoryStore(), directory=people) as engine:
        waiting = await engine.run(module.workflow, {"inquiry": urgent})
        assert waiting.status is WorkflowStatus.WAITING_APPROVAL
        assert waiting.state["needs_review"] is True
        done = await engine.decide(
            waiting.run_id, "human_quality_review", actor="sam", approve=True
        )
    assert done.ok
