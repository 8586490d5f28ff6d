"""`cadenza validate` (and `cadenza run`) on hostile workflow files: one located line per
problem on stderr, exit status 2, no traceback; and what validating imports."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from tests.graph.spec_mutations import HOSTILE
from typer.testing import CliRunner

from cadenza.cli import app
from cadenza.graph.spec_read import MAX_SHOWN

EXAMPLES = Path(__file__).parents[2] / "examples"
runner = CliRunner()
DOTTED = "write a dotted Python name (package.module)"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, name: str
) -> None:
    monkeypatch.setenv("CADENZA_DB", str(tmp_path / "cli.db"))
    data, suffix, where, message = HOSTILE[name]
    path = tmp_path / f"wf{suffix}"
    path.write_bytes(data)
    code, out, err = invoke(command, str(path))
    assert code == 2, err
    assert "Traceback" not in out + err
    (line,) = err.splitlines()
    assert line.startswith(f"{path}{where}") and message in line, line


def test_the_problems_printed_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "name: x\nsteps:\n" + "".join(f"  - {{name: s{i}, timout: 1}}\n" for i in range(120))
    )
    code, _, err = invoke("validate", str(path))
    lines = err.splitlines()
    assert code == 2 and len(lines) == MAX_SHOWN + 1
    assert all(line.startswith(f"{path}:") for line in lines)
    assert lines[-1] == f"{path}: ... and 70 more problems"


def test_a_missing_file(tmp_path: Path) -> None:
    code, _, err = invoke("validate", str(tmp_path / "gone.yaml"))
    assert code == 2
    assert err.strip() == f"{tmp_path / 'gone.yaml'}: cannot read: No such file or directory"


def _spy(folder: Path) -> tuple[str, Path]:
    """A handler module that leaves a file behind when imported."""
    name = f"spy_{uuid.uuid4().hex}"
    (folder / f"{name}.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_suffix('.imported').touch()\n\n"
        "def fn(state, ctx=None):\n"
        "    return None\n"
    )
    return name, folder / f"{name}.imported"


def test_no_import_checks_without_running_the_handler_modules(tmp_path: Path) -> None:
    spy, imported = _spy(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"name: x\nhandlers: {spy}\nsteps: [{{name: a, handler: '{spy}:fn'}}, {{name: b}}]\n"
    )
    code, out, err = invoke("validate", str(path), "--no-import")
    assert code == 0, err
    assert out.startswith("ok: x (2 steps")
    assert not imported.exists()
    code, _, err = invoke("validate", str(path))  # handler modules named: imported by default
    assert imported.exists()
    assert code == 2 and "no handler named 'b'" in err


def test_no_import_is_the_default_when_no_handler_module_is_named(tmp_path: Path) -> None:
    spy, imported = _spy(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text(f"name: x\nsteps: [{{name: a, handler: '{spy}:fn'}}]\n")
    code, out, _ = invoke("validate", str(path))
    assert code == 0 and out.startswith("ok: x")
    assert not imported.exists()
    code, _, err = invoke("validate", str(path), "--import")
    assert code == 0, err
    assert imported.exists()


def test_handlers_option_names_a_module_and_so_imports(tmp_path: Path) -> None:
    spy, imported = _spy(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text("name: x\nsteps: [{name: a}]\n")
    code, _, err = invoke("validate", str(path), "--handlers", spy)
    assert imported.exists()
    assert code == 2 and "no handler named 'a'" in err
    code, _, err = invoke("validate", str(path), "--handlers", "../evil")
    assert code == 2
    assert err.strip() == f"{path}: handler module: '../evil' is not a module name: {DOTTED}"


def test_a_malformed_reference_is_an_error_without_imports_too(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: x\nhandlers: somewhere\nsteps: [{name: a, compensate: '../../evil:fn'}]\n"
    )
    code, _, err = invoke("validate", str(path), "--no-import")
    assert code == 2
    assert err.startswith(
        f"{path}:3:19: $.steps[0].compensate: '../../evil:fn' is not a handler reference"
    )


def test_the_examples_validate_without_imports() -> None:
    for example in EXAMPLES.glob("*.yaml"):
        code, out, err = invoke("validate", str(example), "--no-import")
        assert code == 0 and out.startswith("ok: "), (example, err)
    for example in (EXAMPLES / "brief").glob("*.json"):  # the brief's lists name no module
        module = f"brief.{example.stem}_handlers"
        code, out, err = invoke("validate", str(example), "--handlers", module, "--no-import")
        assert code == 0 and out.startswith("ok: "), (example, err)


def test_no_import_is_refused_for_a_python_target() -> None:
    code, _, err = invoke("validate", str(EXAMPLES / "customer_service.py"), "--no-import")
    assert code == 2
    assert "--no-import is for YAML/JSON files" in err and len(err.strip().splitlines()) == 1
