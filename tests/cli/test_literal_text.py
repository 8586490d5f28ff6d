"""Text from users, definitions, steps and stores is printed as written: Rich markup in it
(``[/path]``, ``[bold]``, ``[link=...]``) is neither applied nor fatal, emoji codes stay codes,
and control characters (an ANSI ``ESC[2J`` that would clear the screen) are shown as escapes.
A one-line error stays one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from cadenza.cli import app

runner = CliRunner()

#: What a step fails with: markup Rich would read, an emoji code, ANSI escapes, a newline.
MESSAGE = (
    "expected a list like [/path] in field 'files'; [bold]not bold[/bold] "
    "[link=http://e]x[/link] :smile: pip install 'cadenza[llm]' \x1b[2J\x1b[31mred\x9b1m"
    "\nsecond line"
)
#: The same as it must be shown: control characters escaped, everything else as written.
SHOWN = MESSAGE.replace("\x1b", "\\x1b").replace("\x9b", "\\x9b")
#: Steps' and runs' errors keep the first line (``scheduler.first_line``).
FIRST_LINE, _ = SHOWN.split("\n")
PIECES = ["[/path]", "[bold]not bold[/bold]", "[link=http://e]x[/link]", ":smile:"]

FAILING = f"""
from typing import TypedDict
from cadenza import NonRetryableError, Workflow

class S(TypedDict, total=False):
    files: list[str]

workflow = Workflow("literal [bold]flow[/bold]", state=S)

@workflow.step
def explode(state: S) -> S:
    raise NonRetryableError({MESSAGE!r})
"""

WAITING = """
from typing import TypedDict
from cadenza import Workflow

class S(TypedDict, total=False):
    amount: int

workflow = Workflow("gated", state=S)
workflow.approval(
    "review",
    approvers=["compliance_officer"],
    summary="pay [bold]now[/bold] to [/x] :smile: \\x1b[2J\\nthen file it",
)
"""


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CADENZA_DB", str(tmp_path / "runs.db"))
    config = tmp_path / "cadenza.toml"
    config.write_text('[users]\nolivia = ["compliance_officer"]\n')
    monkeypatch.setenv("CADENZA_CONFIG", str(config))
    yield
    structlog.reset_defaults()


def invoke(*args: str) -> tuple[int, str, str]:
    # Wide, so that table cells hold the texts looked for on one line.
    result = runner.invoke(app, list(args), env={"COLUMNS": "400"})
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "MarkupError" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "\x1b" not in output and "\x9b" not in output, "a control character reached the tty"
    return result.exit_code, result.stdout, result.stderr


def failed_run(tmp_path: Path) -> tuple[str, str, str]:
    module = tmp_path / "failing.py"
    module.write_text(FAILING)
    code, out, err = invoke("run", str(module))
    assert code == 1
    return out, err, json.loads(invoke("runs", "list", "--json")[1])[0]["run_id"]


def test_run_prints_a_step_error_as_written(tmp_path: Path) -> None:
    out, err, _ = failed_run(tmp_path)
    assert "FAILED" in out
    assert FIRST_LINE in out
    progress = next(line for line in err.splitlines() if "explode (attempt" in line)
    assert FIRST_LINE in progress


def test_runs_list_show_and_retry_keep_working(tmp_path: Path) -> None:
    _, _, run_id = failed_run(tmp_path)
    code, out, _ = invoke("runs", "list")
    assert code == 0 and "literal [bold]flow[/bold]" in out and "[/path]" in out
    code, out, _ = invoke("runs", "show", run_id)
    assert code == 0 and "literal [bold]flow[/bold]" in out
    assert all(piece in out for piece in PIECES) and "\\x1b[2J" in out
    code, out, _ = invoke("runs", "show", run_id, "--json")
    assert code == 0 and MESSAGE.startswith(json.loads(out)["error"].split(": ", 1)[1])
    code, out, _ = invoke("runs", "retry", run_id)
    assert code == 1 and FIRST_LINE in out


def test_json_output_escapes_control_characters_and_round_trips(tmp_path: Path) -> None:
    failed_run(tmp_path)
    code, out, _ = invoke("runs", "list", "--json")
    assert code == 0 and "\\u001b[2J" in out and "\\u009b" in out
    assert MESSAGE.startswith(json.loads(out)[0]["error"].split(": ", 1)[1])


def test_approvals_list_shows_a_summary_with_brackets(tmp_path: Path) -> None:
    module = tmp_path / "gated.py"
    module.write_text(WAITING)
    code, out, _ = invoke("run", str(module), "-q", "--json")
    assert code == 0 and json.loads(out)["status"] == "WAITING_APPROVAL"
    code, out, _ = invoke("approvals", "list")
    assert code == 0
    lines = out.splitlines()
    (at,) = [
        i for i, line in enumerate(lines) if "pay [bold]now[/bold] to [/x] :smile: \\x1b[2J" in line
    ]
    assert "then file it" in lines[at + 1], "a newline in a cell is a new line of the cell"


def test_a_refusal_quotes_the_name_given_literally(tmp_path: Path) -> None:
    module = tmp_path / "gated.py"
    module.write_text(WAITING)
    run_id = json.loads(invoke("run", str(module), "-q", "--json")[1])["run_id"]
    code, _, err = invoke("approve", run_id, "review", "--as", "[bold]olivia[/bold]\x1b[2J")
    assert code == 2
    assert "unknown user '[bold]olivia[/bold]\\x1b[2J'" in err
    assert len(err.strip().splitlines()) == 1


def test_validate_prints_problems_with_brackets(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text('name: x\nsteps:\n  - {type: "[/x] :smile:", name: a}\n')
    code, _, err = invoke("validate", str(broken))
    assert code != 0
    assert "unknown step type '[/x] :smile:'" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[users]\nol\xefvia = ['x']\n", "not UTF-8 text (byte 0xef at offset 10); save it"),
        (b"users = 5\n", "[users] must be a table of user = [roles]"),
        (b'[users]\n"ol\\nivia" = 5\n', "users.ol\\nivia must be a list of role names"),
        (b'[users]\n"\\u001b[2J" = 5\n', "users.\\x1b[2J must be a list of role names"),
    ],
)
def test_a_bad_configuration_is_one_literal_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_bytes(content)
    monkeypatch.setenv("CADENZA_CONFIG", str(config))
    (tmp_path / "runs.db").touch()  # a store to list from (a missing one is its own error)
    code, out, err = invoke("approvals", "list", "--for", "olivia")
    assert code == 2 and out == ""
    assert err.strip().startswith(f"error: {config}: {message}")
    assert len(err.strip().splitlines()) == 1


def test_a_hint_with_brackets_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    from cadenza.core.errors import CadenzaError

    def broken(*args: object, **kwargs: object) -> None:
        raise CadenzaError("the openai model needs: pip install 'cadenza[llm]'")

    monkeypatch.setattr("cadenza.runtime.loader.load_target", broken)
    code, _, err = invoke("run", "anything:wf")
    assert code == 2 and "pip install 'cadenza[llm]'" in err
