"""The command line as a new user meets it: which store a ``--store`` names, run ids as they
start and by prefix, modules next to the shell, the configuration looked for, each failure
printed once, ``--json`` where a script wants it, and tables at 80 columns."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cadenza.cli import app

EXAMPLES = Path(__file__).parents[2] / "examples"
runner = CliRunner()

FAILING = """
from cadenza import Workflow

wf = Workflow("failing")


@wf.step
def boom(state):
    raise ValueError("nope")
"""

WAITING = """
from cadenza import Workflow

wf = Workflow("a_workflow_with_a_rather_long_name")


@wf.step
def prepare(state):
    return {}


wf.approval("review", approvers=["compliance_officer"])
"""


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("CADENZA_STORE", raising=False)
    monkeypatch.setenv("CADENZA_DB", str(tmp_path / "runs.db"))
    monkeypatch.setenv("CADENZA_CONFIG", str(EXAMPLES / "cadenza.toml"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # commands put the cwd on it
    yield
    structlog.reset_defaults()


def invoke(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def started(tmp_path: Path, source: str, *args: str) -> dict[str, object]:
    module = tmp_path / "flow.py"
    module.write_text(source)
    code, out, err = invoke("run", str(module), "-q", "--json", *args)
    assert code in (0, 1), err
    result: dict[str, object] = json.loads(out)
    return result


# -- which store ----------------------------------------------------------------------------


def test_postgres_without_its_driver_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "sys.argv = ['cadenza', 'runs', 'list', '--store', 'postgresql://u@127.0.0.1/db']\n"
        "from cadenza.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "error: a postgresql:// store needs the PostgreSQL driver: pip install 'cadenza[postgres]'"
    )


def test_an_unknown_scheme_is_refused_by_name_without_the_rest(tmp_path: Path) -> None:
    code, _, err = invoke("runs", "list", "--store", "mysql://root:secret@db/runs")
    assert code == 2
    assert one_line(err).startswith("error: unknown store scheme 'mysql://'")
    assert "secret" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("form", ["sqlite:{}", "sqlite:///{}", "{}"])
def test_sqlite_urls_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flow.py").write_text(FAILING)
    code, _, _ = invoke("run", "flow.py", "-q", "--store", form.format("x.db"))
    assert code == 1
    assert (tmp_path / "x.db").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sqlite")]
    code, out, _ = invoke("runs", "list", "--json", "--store", "sqlite:///x.db")
    assert code == 0 and json.loads(out)[0]["workflow"] == "failing"


def test_a_sqlite_url_with_a_host_is_refused() -> None:
    code, _, err = invoke("runs", "list", "--store", "sqlite://host/x.db")
    assert code == 2 and "sqlite:///relative.db or sqlite:////absolute.db" in one_line(err)


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "list"],
        ["runs", "show", "abc"],
        ["runs", "cancel", "abc"],
        ["approvals", "list"],
        ["approve", "abc", "review", "--as", "olivia"],
        ["signal", "abc", "go"],
        ["resume"],
        ["audit", "verify"],
        ["audit", "anchor"],
        ["audit", "export", "abc"],
    ],
)
def test_commands_that_need_runs_never_create_a_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo.db"
    code, _, err = invoke(*command, "--store", str(missing))
    assert code == 2
    assert one_line(err) == f"error: no store at '{missing}': no such file (a run creates it)"
    assert not missing.exists()


# -- run ids --------------------------------------------------------------------------------


def test_the_run_id_is_printed_when_the_run_starts(tmp_path: Path) -> None:
    module = tmp_path / "flow.py"
    module.write_text(FAILING)
    code, out, err = invoke("run", str(module), "--json")
    run_id = json.loads(out)["run_id"]
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == f"run {run_id} started (failing)", "first, before any step"
    assert lines[1] == "▸ boom", "steps in flight: a line per start when not on a terminal"


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_a_failure_is_printed_once(tmp_path: Path, quiet: list[str]) -> None:
    module = tmp_path / "flow.py"
    module.write_text(FAILING)
    code, out, err = invoke("run", str(module), *quiet)
    assert code == 1
    assert (out + err).count("nope") == (2 if not quiet else 1), out + err
    assert "step 'boom' failed: nope" in out, "the result says why"
    assert '"event"' not in err, "no structlog line unless --log-level asks for them"
    code, _, err = invoke("run", str(module), "-q", "--log-level", "WARNING")
    assert '"event": "step_failed"' in err, "logs when asked for"


def test_runs_are_named_by_a_unique_prefix(tmp_path: Path) -> None:
    run_id = str(started(tmp_path, WAITING)["run_id"])
    code, out, _ = invoke("runs", "show", run_id[:5], "--json")
    assert code == 0 and json.loads(out)["run_id"] == run_id
    code, out, _ = invoke("approve", run_id[:6], "review", "--as", "olivia", "--json")
    assert code == 0 and json.loads(out)["status"] == "COMPLETED"
    code, out, _ = invoke("audit", "export", run_id[:4])
    assert code == 0 and run_id in out


def test_an_ambiguous_prefix_is_one_line_listing_the_runs(tmp_path: Path) -> None:
    ids = {str(started(tmp_path, WAITING)["run_id"]) for _ in range(20)}
    shared = next(
        a[:n] for n in (1, 2) for a in sorted(ids) for b in ids if a != b and a[:n] == b[:n]
    )
    code, _, err = invoke("runs", "show", shared)
    line = one_line(err)
    assert code == 2 and f"run id '{shared}' is ambiguous" in line
    assert sum(i in line for i in ids) >= 2


def test_a_module_in_the_current_directory_is_a_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orders_here.py").write_text(FAILING)
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke("run", "orders_here:wf", "-q", "--json")
    assert code == 1 and json.loads(out)["workflow"] == "failing", err


def test_an_unknown_user_is_told_which_configuration_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = str(started(tmp_path, WAITING)["run_id"])
    monkeypatch.delenv("CADENZA_CONFIG")
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("approve", run_id, "review", "--as", "olivia")
    assert code == 2
    assert f"found no cadenza.toml in {tmp_path} and CADENZA_CONFIG is not set" in one_line(err)


# -- --json ---------------------------------------------------------------------------------


def test_reject_and_signal_take_json(tmp_path: Path) -> None:
    run_id = str(started(tmp_path, WAITING)["run_id"])
    code, out, _ = invoke("reject", run_id, "review", "--as", "olivia", "-m", "no", "--json")
    assert code == 1 and json.loads(out)["status"] == "FAILED"


def test_validate_json(tmp_path: Path) -> None:
    code, out, _ = invoke("validate", str(EXAMPLES / "order_processing.yaml"), "--json")
    assert code == 0
    assert json.loads(out) == {
        "ok": True,
        "workflow": "order_processing",
        "version": json.loads(out)["version"],
        "steps": json.loads(out)["steps"],
    }
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  - {type: PARALEL, name: a}\n")
    code, out, _ = invoke("validate", str(broken), "--json")
    (problem,) = json.loads(out)["problems"]
    assert code == 2 and problem["line"] == 3 and problem["column"] == 6
    assert problem["path"] == "$.steps[0].type" and "PARALEL" in problem["message"]


def test_audit_verify_json(tmp_path: Path) -> None:
    started(tmp_path, WAITING)
    code, out, _ = invoke("audit", "verify", "--json")
    assert code == 0
    assert json.loads(out) == {
        "ok": True,
        "runs": 1,
        "broken": [],
        "anchors_held": None,
        "unchecked_values": 0,
    }


def test_worker_logs_json_lines(tmp_path: Path) -> None:
    module = tmp_path / "flow.py"
    module.write_text(WAITING)
    code, _, _ = invoke("run", str(module), "--enqueue")
    assert code == 0
    code, _, err = invoke("worker", "--workflow", str(module), "--once", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    statuses = [e["status"] for e in events if e["event"] == "status"]
    assert statuses[-1] == "WAITING_APPROVAL"


# -- log levels -----------------------------------------------------------------------------


def test_a_workflow_log_level_drops_its_own_lines_below_it(tmp_path: Path) -> None:
    module = tmp_path / "chatty.py"
    module.write_text(
        "from cadenza import Workflow, WorkflowConfiguration\n"
        "wf = Workflow('chatty', config=WorkflowConfiguration(log_level='WARNING'))\n"
        "@wf.step\n"
        "def talk(state, ctx):\n"
        "    ctx.logger.info('chatter')\n"
        "    ctx.logger.warning('worth saying')\n"
        "    return {}\n"
    )
    code, _, err = invoke("run", str(module), "-q", "--log-level", "DEBUG")
    assert code == 0
    assert "worth saying" in err and "chatter" not in err


# -- tables at 80 columns -------------------------------------------------------------------


def test_tables_keep_whole_run_ids_and_statuses_at_80_columns(tmp_path: Path) -> None:
    run_id = str(started(tmp_path, WAITING)["run_id"])
    code, out, _ = invoke("runs", "list", columns=80)
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    row = next(line for line in out.splitlines() if run_id in line)
    assert re.search(rf"{run_id}\s+WAITING_APPROVAL", row)
    code, out, _ = invoke("runs", "show", run_id, columns=80)
    assert code == 0 and run_id in out and "WAITING_APPROVAL" in out
    assert max(len(line) for line in out.splitlines()) <= 80
