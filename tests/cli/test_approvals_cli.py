"""The compliance review of the financial example, from the shell: run, list, a refused
approval, an approval that completes the run, and what runs show says afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cadenza.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CADENZA_DB", str(tmp_path / "runs.db"))
    monkeypatch.setenv("CADENZA_CONFIG", str(EXAMPLES / "cadenza.toml"))
    yield
    structlog.reset_defaults()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_compliance_review_from_the_shell() -> None:
    code, out, err = invoke(
        "run",
        str(EXAMPLES / "financial_transaction.yaml"),
        "-q",
        "--json",
        "--input",
        '{"amount": 25000, "account": "ACC-1"}',
    )
    assert code == 0, err
    waiting = json.loads(out)
    assert waiting["status"] == "WAITING_APPROVAL"
    run_id = waiting["run_id"]

    code, out, _ = invoke("approvals", "list", "--json")
    (pending,) = json.loads(out)
    assert pending["run_id"] == run_id and pending["step"] == "compliance_review"
    assert pending["approvers"] == ["compliance_officer"] and pending["since"] > 0
    code, out, _ = invoke("approvals", "list", "--json", "--for", "victor")
    assert json.loads(out) == []

    code, _, err = invoke("approve", run_id, "compliance_review", "--as", "victor")
    assert code == 2
    assert "victor may not decide 'compliance_review'" in err and "viewer" in err

    code, out, err = invoke(
        "approve", run_id, "compliance_review", "--as", "olivia", "--comment", "ok"
    )
    assert code == 0, err
    assert "COMPLETED" in out

    code, out, _ = invoke("runs", "show", run_id, "--json")
    shown = json.loads(out)
    assert shown["status"] == "COMPLETED" and not shown["error"]
    steps = {row["step"]: row for row in shown["timeline"]}
    assert steps["compliance_review"]["decided_by"] == "approved by olivia"
    assert shown["state"]["receipt"] == "Receipt: 25000.00 from ACC-1 settled."

    code, _, err = invoke("approve", run_id, "compliance_review", "--as", "olivia")
    assert code == 2 and "not waiting for an approval" in err


def test_signal_payload_must_be_json() -> None:
    code, _, err = invoke("signal", "anything", "paid", "--payload", "{nope")
    assert code == 2 and "invalid JSON in --payload" in err


def test_audit_verify_finds_the_edited_event(tmp_path: Path) -> None:
    import sqlite3

    code, out, _ = invoke(
        "run",
        str(EXAMPLES / "financial_transaction.yaml"),
        "-q",
        "--json",
        "--input",
        '{"amount": 120, "account": "ACC-9"}',
    )
    run_id = json.loads(out)["run_id"]
    code, out, _ = invoke("audit", "verify")
    assert code == 0 and "every event chain verifies" in out
    code, out, _ = invoke("audit", "export", run_id, "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("run_id,seq,when,who,what,why")

    with sqlite3.connect(tmp_path / "runs.db") as conn:
        conn.execute(
            "UPDATE events SET data = replace(data, 'ACC-9', 'ACC-6') WHERE run_id = ? AND seq = 1",
            (run_id,),
        )
    code, _, err = invoke("audit", "verify", run_id)
    assert code == 1
    assert f"run {run_id} event 1: edited" in err


def test_approvals_list_pages_oldest_first_for_a_user() -> None:
    started = []
    for amount in (20000, 30000, 40000):
        code, out, err = invoke(
            "run",
            str(EXAMPLES / "financial_transaction.yaml"),
            "-q",
            "--json",
            "--input",
            json.dumps({"amount": amount, "account": "ACC-1"}),
        )
        assert code == 0, err
        started.append(json.loads(out)["run_id"])
    code, out, _ = invoke("approvals", "list", "--json", "--for", "olivia", "--limit", "2")
    assert code == 0 and [p["run_id"] for p in json.loads(out)] == started[:2]
    code, out, _ = invoke("approvals", "list", "--limit", "2")
    assert code == 0 and "the oldest 2; --limit to see more" in out
    code, out, _ = invoke("approvals", "list", "--json", "--for", "compliance_officer")
    assert json.loads(out) == [], "a role's name is no user"
