"""Start-up: ``import cadenza`` and every command import only what they use, and the lazy
public API and command list stay complete."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import cadenza
import cadenza.agents
from cadenza.cli import app
from cadenza.cli._app import COMMANDS

SRC = Path(__file__).parents[2] / "src" / "cadenza"
HEAVY = ("cadenza.runtime.engine", "cadenza.agents._react", "cel", "prompt_toolkit", "httpx")
COMMAND_MODULES = ("cadenza.cli.run", "cadenza.cli.runs", "cadenza.cli.people", "cadenza.cli.audit")


def loaded_after(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (whose SystemExit, as a
    command's, is ignored)."""
    script = (
        "import sys, json\n"
        f"try:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
        "sys.__stdout__.write('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("package", [cadenza, cadenza.agents])
def test_every_public_name_resolves_and_is_declared_for_type_checkers(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert sorted(names) == sorted(package._EXPORTS)  # type: ignore[attr-defined]
    for name in names:
        assert getattr(package, name) is not None, name
        assert name in dir(package)
    # The TYPE_CHECKING block names the same things from the same modules.
    file = Path(package.__file__)  # type: ignore[attr-defined]
    tree = ast.parse(file.read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If)]
    declared = {
        (alias.asname or alias.name): (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    exports = {
        name: (where, name) if isinstance(where, str) else where
        for name, where in package._EXPORTS.items()  # type: ignore[attr-defined]
    }
    assert declared == exports


def test_from_cadenza_import_everything() -> None:
    namespace: dict[str, object] = {}
    exec("from cadenza import *", namespace)
    assert set(cadenza.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = cadenza.Nope  # type: ignore[attr-defined]


def test_import_cadenza_imports_no_subsystem(tmp_path: Path) -> None:
    loaded = loaded_after("import cadenza", tmp_path)
    assert not [m for m in loaded if m.startswith(("cadenza.", "pydantic", "structlog", "rich"))]
    assert not loaded & set(HEAVY)


def test_conditions_compile_without_the_cel_command_line(tmp_path: Path) -> None:
    code = (
        "from cadenza import compile_expression\n"
        "assert compile_expression('amount > 10').evaluate({'amount': 11}) is True"
    )
    loaded = loaded_after(code, tmp_path)
    assert "cel.cel" in loaded
    assert "cel.cli" not in loaded and "prompt_toolkit" not in loaded


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    code = "import sys; sys.argv = ['cadenza', '--help']\nfrom cadenza.cli import main; main()"
    loaded = loaded_after(code, tmp_path)
    assert not loaded & {*COMMAND_MODULES, *HEAVY, "asyncio", "typer._adapters"}


def test_listing_runs_needs_no_engine(tmp_path: Path) -> None:
    (tmp_path / "runs.db").touch()
    code = (
        "import sys; sys.argv = ['cadenza', 'runs', 'list', '--store', 'runs.db']\n"
        "from cadenza.cli import main; main()"
    )
    loaded = loaded_after(code, tmp_path)
    assert "cadenza.cli.runs" in loaded and "cadenza.store.sqlite" in loaded
    assert not loaded & {"cadenza.cli.run", "cadenza.cli.audit", *HEAVY}


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


def test_the_help_lines_are_the_commands_docstrings() -> None:
    group = typer.main.get_command(app)
    for name, entry in COMMANDS.items():
        command = group._load(name)  # type: ignore[attr-defined]
        assert _first_paragraph(command.help or "") == entry.help, name


def test_help_lists_every_command_in_order() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    listed = [
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1] in COMMANDS
    ]
    assert listed == list(COMMANDS)


def test_an_unknown_command_suggests_a_known_one() -> None:
    result = CliRunner().invoke(app, ["rnu"])
    assert result.exit_code == 2 and "Did you mean 'run'" in result.output


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"cadenza {version('cadenza')}\n"
