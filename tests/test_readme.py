"""Every command the README shows is run here, so that the README cannot drift from the code.

- The ```bash blocks run in order, each from the repository's root as a reader would type them
  (``cd`` and ``export`` hold for the rest of their block). A command ending in ``&`` starts in
  the background and is waited for until it says it is ready (a known line of its output);
  background processes live until the end and are stopped then. ``RUN`` stands for the id of
  the latest run. The runs go to a temporary store, and ``postgresql://`` URLs to a new
  database (the block is skipped, saying why, without a server).
- The commands that set up a machine (a venv, ``pip install``) are not run again: they are
  checked to be what ``.ci/run`` runs, which reads the README's test command and runs it as
  written; ``python -m pytest`` is this suite.
- Each line of a command-line synopsis (the plain ``` blocks) names a command that exists,
  options it accepts, and, with its placeholders filled in and its optional parts left out,
  parses and runs (a refusal of what it asks is fine; a usage error is not).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cadenza.cli import app

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"

#: What a background command prints once it is ready, by a word of the command.
READY = {"receiver.py": "listening on", "worker": "worker_started", "serve": "listening on"}

#: Commands that set up a machine, checked against .ci/run instead of run.
SETUP = re.compile(r"^(python3 -m venv \.venv|\.venv/bin/pip install .*)$")
SUITE = ".venv/bin/python -m pytest"


def fenced_blocks() -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced code block, in order."""
    blocks, language, lines = [], None, []
    for line in README.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(lines) + "\n"))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def bash_blocks() -> list[str]:
    return [text for language, text in fenced_blocks() if language == "bash"]


def synopsis_lines() -> list[str]:
    """The ``cadenza ...`` lines of the plain (language-less) code blocks, comments cut."""
    return [
        line.split("  #")[0].strip()
        for language, text in fenced_blocks()
        if language == ""
        for line in text.splitlines()
        if line.startswith("cadenza")
    ]


def segments(block: str) -> Iterator[list[str]]:
    """Each command of a block as tokens (``&&`` separates commands; comments dropped)."""
    for line in block.splitlines():
        tokens = shlex.split(line, comments=True)
        command: list[str] = []
        for token in tokens:
            if token == "&&":
                yield command
                command = []
            else:
                command.append(token)
        if command:
            yield command


# -- setup commands: what CI runs ---------------------------------------------------------------


def test_the_setup_commands_are_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'section = text.split("Set up and run the tests:", 1)[1]' in ci, (
        ".ci/run reads the README's test command after this marker and runs it as written"
    )
    tests = re.search(r"```bash\n(.*?)\n```", README.split("Set up and run the tests:", 1)[1], re.S)
    assert tests is not None
    venv, install, suite = [shlex.join(c) for c in segments(tests.group(1))]
    assert venv == "python3 -m venv .venv" and suite == SUITE
    assert re.fullmatch(r"\.venv/bin/pip install -q -e '?\.\[[a-z,]+\]'?", install), install
    setup = [
        shlex.join(c) for b in bash_blocks() for c in segments(b) if SETUP.match(shlex.join(c))
    ]
    for command in setup:  # the quick start installs a part of what CI installs
        assert command == venv or command in (
            ".venv/bin/pip install -q -e .",
            install,
        ), f"{command!r} is not what .ci/run runs"
    assert sum(shlex.join(c) == SUITE for b in bash_blocks() for c in segments(b)) >= 1


def test_the_yaml_example_is_the_example_file() -> None:
    """The README's YAML is ``examples/order_processing.yaml`` (its header comment aside), which
    the bash blocks validate and run: an example that does not validate cannot be shown."""
    (shown,) = [text for language, text in fenced_blocks() if language == "yaml"]
    lines = (ROOT / "examples" / "order_processing.yaml").read_text().splitlines(keepends=True)
    assert shown == "".join(lines[next(i for i, x in enumerate(lines) if not x.startswith("#")) :])
    assert "cadenza validate examples/order_processing.yaml" in "".join(bash_blocks())


# -- the bash blocks ----------------------------------------------------------------------------


@dataclass
class Session:
    """A reader's shell: the environment, background processes, runs handed to workers."""

    tmp: Path
    env: dict[str, str]
    background: list[tuple[subprocess.Popen[str], Path]] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for process, log in self.background:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"{process.args} did not stop on SIGTERM:\n{log.read_text()}")


def _base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `cadenza`, `python`: this venv's
    env["CADENZA_DB"] = str(tmp / "readme.db")
    env["COLUMNS"] = "120"
    return env


def _postgres_database(session: Session) -> str:
    """A new database on the test server, as a URL; skips without psycopg or a server."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        pytest.skip("the README's PostgreSQL block needs psycopg: pip install 'cadenza[postgres]'")
    name = f"cadenza_readme_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not available at {PG_SERVER}: {exc}")
    session.databases.append(name)
    return PG_SERVER.rsplit("/", 1)[0] + f"/{name}"


def _drop_databases(names: list[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        for name in names:
            query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(query.format(sql.Identifier(name)))


def _latest_run(cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["cadenza", "runs", "list", "--json", "--limit", "1"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (run,) = json.loads(done.stdout)
    return str(run["run_id"])


def _start_background(session: Session, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    word = next((w for w in READY if any(w in a for a in argv)), None)
    assert word is not None, f"no readiness signal known for {shlex.join(argv)}"
    log = session.tmp / f"background-{len(session.background)}.log"
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )
    session.background.append((process, log))
    deadline = time.monotonic() + 30
    while READY[word] not in log.read_text():
        assert process.poll() is None, f"{shlex.join(argv)} exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{shlex.join(argv)} never got ready"
        time.sleep(0.05)


def _wait_finished(run_id: str, cwd: Path, env: dict[str, str]) -> None:
    """A run handed to the workers (``--enqueue``) finishes: they picked it up and ran it."""
    deadline = time.monotonic() + 60
    while True:
        shown = subprocess.run(
            ["cadenza", "runs", "show", run_id, "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        status = json.loads(shown.stdout)["status"]
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            assert status == "COMPLETED", shown.stdout
            return
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.2)


def run_block(session: Session, block: str) -> int:
    """Run one README block as a reader would; returns how many commands ran."""
    cwd, env, ran = ROOT, dict(session.env), 0
    enqueued: list[str] = []
    for argv in segments(block):
        text = shlex.join(argv)
        if SETUP.match(text) or text == SUITE:
            continue  # test_the_setup_commands_are_what_ci_runs
        if argv[0] == "cd":
            cwd = (cwd / argv[1]).resolve()
            continue
        if argv[0] == "export":
            key, _, value = argv[1].partition("=")
            if value.startswith(("postgres://", "postgresql://")):
                value = _postgres_database(session)
            env[key] = value
            continue
        argv = [str(BIN) + a.removeprefix(".venv/bin") if a.startswith(".venv/bin/") else a
                for a in argv]  # fmt: skip
        if "RUN" in argv:
            argv = [_latest_run(cwd, env) if a == "RUN" else a for a in argv]
        if argv[-1] == "&":
            _start_background(session, argv[:-1], cwd, env)
        else:
            done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"{text}\n{done.stdout}\n{done.stderr}"
            if "--enqueue" in argv:
                enqueued.append(done.stdout.strip())
        ran += 1
    for run_id in enqueued:
        _wait_finished(run_id, cwd, env)
    return ran


def test_every_bash_block_runs_as_written(tmp_path: Path) -> None:
    session = Session(tmp_path, _base_env(tmp_path))
    ran = 0
    try:
        for block in bash_blocks():
            try:
                ran += run_block(session, block)
            except pytest.skip.Exception as skipped:
                # Only the PostgreSQL block may skip; the others still have to run.
                print(f"skipped a block: {skipped}")
    finally:
        session.stop()
        if session.databases:
            _drop_databases(session.databases)
    assert ran >= 10


# -- the command-line synopses ------------------------------------------------------------------

#: What each placeholder of a synopsis stands for when it is run.
VALUES = {
    "TARGET": "examples/customer_service.py",
    "FILE": "examples/order_processing.yaml",
    "STEP": "compliance_review",
    "USER": "olivia",
    "NAME": "go",
    "JSON": "{}",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """A store holding a run waiting for an approval, and the environment naming it."""
    tmp = tmp_path_factory.mktemp("synopses")
    env = {
        "CADENZA_DB": str(tmp / "runs.db"),
        "CADENZA_CONFIG": str(ROOT / "examples/cadenza.toml"),
    }
    saved = {k: os.environ.get(k) for k in (*env, "CADENZA_STORE")}
    os.environ.pop("CADENZA_STORE", None)
    os.environ.update(env)
    path = list(sys.path)
    try:
        result = CliRunner().invoke(
            app,
            ["run", str(ROOT / "examples/financial_transaction.yaml"), "-q", "--json",
             "--input", '{"amount": 25000, "account": "ACC-1"}'],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        yield env, json.loads(result.stdout)["run_id"]
    finally:
        sys.path[:] = path
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _command(words: list[str]) -> typer.core.TyperCommand:
    command = typer.main.get_command(app)
    for word in words:
        command = command.get_command(None, word)  # type: ignore[attr-defined]
        assert command is not None, f"no command `cadenza {' '.join(words)}`"
    return command  # type: ignore[return-value]


def _without_optional(line: str) -> str:
    while re.search(r"\[[^\[\]]*\]", line):
        line = re.sub(r"\s*\[[^\[\]]*\]", "", line)
    return line


@pytest.mark.parametrize("line", synopsis_lines())
def test_each_synopsis_names_real_options_and_runs(
    line: str, store: tuple[dict[str, str], str]
) -> None:
    env, run_id = store
    words = line.split()[1:]
    names = [w for w in words if re.fullmatch(r"[a-z]+", w)]
    path = names[: 2 if names and names[0] in ("runs", "approvals", "audit", "keys") else 1]
    options = {
        o for p in (_command(path).params if path else []) for o in (*p.opts, *p.secondary_opts)
    }
    shown = {o for w in re.split(r"[\s\[\]|]+", line) if re.fullmatch(r"--?[a-z][a-z-]*", o := w)}
    if not path:  # `cadenza --version`
        options = {o for p in typer.main.get_command(app).params for o in p.opts}
    assert shown <= options, f"{line}: not options of the command: {shown - options}"

    argv = _without_optional(line).split()[1:]
    argv = [a.split("|")[0] if "|" in a else a for a in argv]  # one of the alternatives
    argv = [run_id if a == "RUN" else VALUES.get(a, a) for a in argv]
    if path == ["worker"]:
        argv.append("--once")  # the synopsis runs until SIGTERM
    result = CliRunner().invoke(app, argv, env={**env, "COLUMNS": "120"})
    output = result.output
    assert "Usage:" not in output and "No such" not in output, f"{line}\n{output}"
    assert result.exit_code in (0, 1, 2), f"{line}\n{output}\n{result.exception!r}"
    if result.exit_code == 2:  # a refusal of what it asks: one `error:` line, not a usage error
        assert output.strip().startswith("error:"), f"{line}\n{output}"
