"""The command line, through typer's runner in-process (fast) on a temporary SQLite file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cadenza.cli import app

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "customer_service.py")
runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("CADENZA_DB", str(path))
    return path


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_run_prints_completed_and_the_final_state(db: Path) -> None:
    code, out, err = invoke(
        "run", EXAMPLE, "--input", '{"inquiry": "I was charged twice for order 1234"}'
    )
    assert code == 0, err
    assert "COMPLETED" in out
    assert "refunded" in out and '"category": "billing"' in out
    assert "✓ classify_inquiry" in err, "live progress goes to stderr"
    assert "route_to_specialist → billing_specialist" in err


def test_run_json_output(db: Path) -> None:
    code, out, _ = invoke(
        "run", EXAMPLE, "--json", "-q", "--input", '{"inquiry": "Do you sell gift cards?"}'
    )
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "COMPLETED"
    assert result["state"]["specialist"] == "general"


def test_run_input_from_file_and_stdin(db: Path, tmp_path: Path) -> None:
    data = tmp_path / "in.json"
    data.write_text('{"inquiry": "my login fails with an error"}')
    code, out, _ = invoke("run", EXAMPLE, "-q", "--json", "--input", f"@{data}")
    assert code == 0 and json.loads(out)["state"]["category"] == "technical"
    code, out, _ = invoke("run", EXAMPLE, "-q", "--json", "--input", "-", input='{"inquiry": "x"}')
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--input", '{"inquiry": '],
            "invalid JSON in --input: Expecting value at line 1 column 13",
        ),
        (["--input", "[1, 2]"], "--input must be a JSON object, got list"),
        (["--input", '{"inquiry": 5}'], "input field inquiry: Input should be a valid string"),
        (["--input", '{"inquery": "hi"}'], "input has field 'inquery' that the state schema"),
        (["--input", "@/nonexistent.json"], "cannot read /nonexistent.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db: Path, args: list[str], message: str) -> None:
    code, out, err = invoke("run", EXAMPLE, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:wf", "cannot import 'no_such_module_xyz'"),
        ("/no/such/file.py", "no such file: /no/such/file.py"),
        (f"{EXAMPLE}:nothing", "has no attribute 'nothing'"),
    ],
)
def test_bad_target_is_one_line_and_exit_2(db: Path, target: str, message: str) -> None:
    code, _, err = invoke("run", target)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_failed_run_exits_1_with_the_error(db: Path, tmp_path: Path) -> None:
    module = tmp_path / "failing.py"
    module.write_text(
        "from cadenza import Workflow\n"
        "workflow = Workflow('failing')\n"
        "@workflow.step\n"
        "def explode(state):\n"
        "    raise RuntimeError('disk full')\n"
    )
    code, out, _ = invoke("run", str(module), "-q")
    assert code == 1
    assert "FAILED" in out and "step 'explode' failed: disk full" in out


def test_runs_list_and_show(db: Path) -> None:
    invoke("run", EXAMPLE, "-q", "--input", '{"inquiry": "where is my package, order 777"}')
    code, out, _ = invoke("runs", "list", "--json")
    assert code == 0
    (run,) = json.loads(out)
    assert run["status"] == "COMPLETED" and run["workflow"] == "customer_service"

    code, out, _ = invoke("runs", "show", run["run_id"], "--json")
    shown = json.loads(out)
    steps = {row["step"]: row for row in shown["timeline"]}
    assert steps["route_to_specialist"]["route"] == ["shipping_specialist"]
    assert steps["billing_specialist"]["status"] == "skipped"
    assert steps["generate_response[0]/draft_greeting"]["status"] == "completed"
    assert steps["classify_inquiry"]["duration_s"] is not None
    assert shown["state"]["order_id"] == "777"

    code, out, _ = invoke("runs", "show", run["run_id"])
    assert code == 0 and "quality_check" in out and "completed" in out

    code, out, _ = invoke("runs", "list")
    cells = [re.split(" {2,}", line.strip()) for line in out.splitlines()]
    header = next(c for c in cells if c and c[0] == "run")  # headings sit over their values
    row = next(c for c in cells if c and c[0] == run["run_id"])  # the whole id, never cut
    assert header[:2] == ["run", "status"] and row[1] == "COMPLETED"

    code, _, err = invoke("runs", "list", "--status", "bogus")
    assert code == 2 and "'BOGUS' is not a valid WorkflowStatus" in err


def test_show_unknown_run(db: Path) -> None:
    db.touch()  # an empty file is an empty SQLite database
    code, _, err = invoke("runs", "show", "nope")
    assert code == 2 and "no run with id 'nope'" in err


def test_resume_with_nothing_to_do(db: Path) -> None:
    db.touch()
    code, _, err = invoke("resume")
    assert code == 0 and "nothing to resume" in err


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


FLAKY = """
from typing import Annotated, TypedDict
import operator, os
from cadenza import Workflow

class S(TypedDict, total=False):
    amount: int
    log: Annotated[list[str], operator.add]

workflow = Workflow("flaky_cli", state=S)

@workflow.step
def price(state: S) -> S:
    return {"log": [f"price:{state['amount']}"]}

@workflow.step
def charge(state: S) -> S:
    if os.environ.get("PAYMENTS") != "up":
        raise ConnectionError("payments down")
    return {"log": [f"charge:{state['amount']}"]}
"""


def test_runs_retry_and_fork(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "flaky_cli.py"
    module.write_text(FLAKY)
    code, out, _ = invoke("run", str(module), "-q", "--json", "--input", '{"amount": 3}')
    assert code == 1
    failed = json.loads(out)
    assert failed["status"] == "FAILED"

    monkeypatch.setenv("PAYMENTS", "up")
    code, out, _ = invoke("runs", "retry", failed["run_id"], "--json")
    assert code == 0, out
    retried = json.loads(out)
    assert retried["state"]["log"] == ["price:3", "charge:3"]

    code, out, _ = invoke(
        "runs", "fork", retried["run_id"], "--from", "price", "--set", "amount=9", "--json"
    )
    assert code == 0
    assert json.loads(out)["state"]["log"] == ["price:3", "charge:9"]

    code, _, err = invoke("runs", "fork", retried["run_id"], "--from", "nope")
    assert code == 2 and "step 'nope' has no recorded completion" in err
    code, _, err = invoke("runs", "fork", retried["run_id"], "--from", "price", "--set", "oops")
    assert code == 2 and "expected KEY=VALUE" in err
    code, _, err = invoke("runs", "retry", retried["run_id"])
    assert code == 2 and "only FAILED or CANCELLED runs can be re-driven" in err
    code, _, err = invoke("runs", "pause", retried["run_id"])
    assert code == 2 and "cannot move a run from COMPLETED to PAUSED" in err


def test_graph_and_validate_commands(db: Path, tmp_path: Path) -> None:
    yaml_example = str(Path(EXAMPLE).with_suffix(".yaml"))
    code, out, _ = invoke("graph", yaml_example)
    assert code == 0 and out.startswith("flowchart TD")
    assert "route_to_specialist" in out and "category == 'billing'" in out
    code, out, _ = invoke("graph", EXAMPLE, "--format", "dot")
    assert code == 0 and out.startswith("digraph")
    code, _, err = invoke("graph", EXAMPLE, "--format", "png")
    assert code == 2 and "write it to a file with --output" in err
    code, _, err = invoke("graph", EXAMPLE, "--format", "gif")
    assert code == 2 and "mermaid, dot, svg, png" in err

    code, out, _ = invoke("validate", yaml_example)
    assert code == 0 and out.startswith("ok: customer_service_yaml (")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  - {type: PARALEL, name: a}\n")
    code, _, err = invoke("validate", str(broken))
    assert code == 2
    assert err.strip() == (
        f"{broken}:3:6: $.steps[0].type: unknown step type 'PARALEL' — did you mean "
        "'PARALLEL'? (types: SEQUENTIAL, PARALLEL, CONDITIONAL, LOOP, REACT, HUMAN_APPROVAL, "
        "ORCHESTRATOR, WORKER, WEBHOOK, ROLLBACK, WAIT)"
    )
    code, out, _ = invoke("schema")
    assert code == 0 and json.loads(out)["title"] == "Cadenza workflow"
