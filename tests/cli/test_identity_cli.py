"""``--as`` from the shell: it names a configured user, never a role, for every decision and
command; every refusal exits 2 with its reason and is in the run's audit record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cadenza.cli import app

runner = CliRunner()

PAYOUT = """
from typing import TypedDict
from cadenza import Workflow

class S(TypedDict, total=False):
    paid: bool

workflow = Workflow("payout", state=S, config={"allowed_users": ["operator"]})

@workflow.step
def prepare(state: S) -> S:
    return {}

workflow.approval("review", approvers=["compliance_officer"], quorum=2)

@workflow.step
def pay(state: S) -> S:
    return {"paid": True}
"""

USERS = """
[users]
olivia = ["compliance_officer"]
omar = ["compliance_officer"]
ann = ["operator"]
victor = ["viewer"]
"""


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CADENZA_DB", str(tmp_path / "runs.db"))
    (tmp_path / "cadenza.toml").write_text(USERS)
    monkeypatch.setenv("CADENZA_CONFIG", str(tmp_path / "cadenza.toml"))
    yield
    structlog.reset_defaults()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def start(tmp_path: Path) -> str:
    module = tmp_path / "payout.py"
    module.write_text(PAYOUT)
    code, out, err = invoke("run", str(module), "-q", "--json", "--as", "ann")
    assert code == 0, err
    assert json.loads(out)["status"] == "WAITING_APPROVAL"
    return str(json.loads(out)["run_id"])


def refusals(run_id: str) -> list[tuple[str, str, str]]:
    code, out, _ = invoke("audit", "export", run_id)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    return [(r["what"], r["who"], r["why"]) for r in records if "refused" in r["what"]]


def status(run_id: str) -> str:
    code, out, _ = invoke("runs", "show", run_id, "--json")
    assert code == 0
    return str(json.loads(out)["status"])


def test_a_role_name_is_refused_and_does_not_count_toward_the_quorum(tmp_path: Path) -> None:
    run_id = start(tmp_path)
    code, _, err = invoke("approve", run_id, "review", "--as", "compliance_officer")
    assert code == 2 and "unknown user 'compliance_officer'" in err and "is a role" in err
    code, out, err = invoke("approve", run_id, "review", "--as", "olivia")
    assert code == 0 and "WAITING_APPROVAL" in out, err
    assert status(run_id) == "WAITING_APPROVAL", "one real officer is not a quorum of 2"
    code, out, err = invoke("approve", run_id, "review", "--as", "omar")
    assert code == 0 and "COMPLETED" in out, err
    ((what, who, why),) = refusals(run_id)
    assert (what, who) == ("approval_refused review", "compliance_officer")
    assert "is a role" in why


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "cancel", "{run}"],
        ["runs", "pause", "{run}"],
        ["runs", "fork", "{run}", "--from", "prepare"],
    ],
)
def test_a_role_name_may_not_control_a_run(tmp_path: Path, args: list[str]) -> None:
    run_id = start(tmp_path)
    command = [a.replace("{run}", run_id) for a in args]
    code, _, err = invoke(*command, "--as", "operator")
    assert code == 2 and "unknown user 'operator'" in err and "is a role" in err
    code, _, err = invoke(*command, "--as", "victor")
    assert code == 2 and "victor may not" in err and "it needs one of operator" in err
    assert status(run_id) == "WAITING_APPROVAL"
    assert [who for _, who, _ in refusals(run_id)] == ["operator", "victor"]


def test_a_role_name_may_not_start_a_guarded_workflow(tmp_path: Path) -> None:
    module = tmp_path / "payout.py"
    module.write_text(PAYOUT)
    code, _, err = invoke("run", str(module), "-q", "--as", "operator")
    assert code == 2 and "unknown user 'operator'" in err
    code, out, _ = invoke("runs", "list", "--json")
    assert json.loads(out) == []


def test_refused_decisions_are_recorded(tmp_path: Path) -> None:
    run_id = start(tmp_path)
    assert invoke("approve", run_id, "review", "--as", "olivia")[0] == 0
    code, _, err = invoke("approve", run_id, "review", "--as", "olivia")
    assert code == 2 and "olivia has already decided on 'review' (approved)" in err
    code, _, err = invoke("reject", run_id, "review", "--as", "olivia", "-m", "changed my mind")
    assert code == 2 and "a decision is final" in err
    code, _, err = invoke("approve", run_id, "pay", "--as", "omar")
    assert code == 2 and "step 'pay'" in err and "not waiting for a decision" in err
    assert invoke("approve", run_id, "review", "--as", "omar")[0] == 0
    code, _, err = invoke("reject", run_id, "review", "--as", "victor")
    assert code == 2 and "is COMPLETED, not waiting for an approval" in err
    assert [(what, who) for what, who, _ in refusals(run_id)] == [
        ("approval_refused review", "olivia"),
        ("approval_refused review", "olivia"),
        ("approval_refused pay", "omar"),
        ("approval_refused review", "victor"),
    ]
    assert status(run_id) == "COMPLETED"
    code, out, _ = invoke("audit", "verify", run_id)
    assert code == 0, out
