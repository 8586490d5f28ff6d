"""The command line's shared parts: the app and the commands it knows, the consoles, common
options, opening the store, input parsing and output.

Text that comes from outside this package's own code (a user, a definition, a step, a model, a
store, an exception) is printed through :func:`literal` or :func:`print_json`, never as part
of a markup string: Rich would read ``[/path]`` or ``[link=...]`` in it as markup (losing the
text or crashing) and ``:smile:`` as an emoji, and a terminal would act on the escape
sequences in it.

This module is imported by every command, ``--help`` included, so it imports only what they
all need (typer, rich's console and text); the engine, the stores and the loggers are imported
inside the functions that use them."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from cadenza.cli._lazy import LazyCommand, LazyGroup
from cadenza.core.errors import CadenzaError
from cadenza.core.status import WorkflowStatus

if TYPE_CHECKING:
    from rich.table import Table

    from cadenza.core.ids import RunId
    from cadenza.runtime.engine import Engine
    from cadenza.store.base import Store

#: Every command, in the order ``cadenza --help`` lists them, with the module defining it and
#: the first paragraph of its help (checked against the docstring by the tests).
COMMANDS: dict[str, LazyCommand] = {
    "run": LazyCommand(
        "run",
        "Run a workflow to completion and print its final status and state (with --enqueue: "
        "hand it to the workers and print its id).",
    ),
    "resume": LazyCommand(
        "run", "Continue unfinished runs (after a crash) from their last committed step."
    ),
    "worker": LazyCommand(
        "run",
        "Claim and execute runs from the store until SIGTERM: queued runs, runs whose worker "
        "died, timers and approvals that are due, commands to runs held here.",
    ),
    "runs": LazyCommand("runs", "List, inspect, cancel, re-drive, fork and pause runs."),
    "approvals": LazyCommand("people", "Approvals waiting for a decision."),
    "approve": LazyCommand(
        "people", "Approve a waiting step; with its quorum reached the run goes on here."
    ),
    "reject": LazyCommand(
        "people", "Reject a waiting step: the run fails (after compensating what it declared)."
    ),
    "signal": LazyCommand("people", "Deliver a named external event to a run."),
    "audit": LazyCommand("audit", "The tamper-evident audit trail."),
    "validate": LazyCommand(
        "run",
        "Check a workflow definition; print each problem as FILE:LINE:COL: message and exit 2 "
        "when there is any. A Python target is checked by importing it.",
    ),
    "graph": LazyCommand(
        "run", "Draw a workflow as Mermaid (default) or DOT text, or as SVG/PNG with Graphviz."
    ),
    "schema": LazyCommand(
        "run", "Print the JSON Schema of the YAML/JSON workflow format (for editor completion)."
    ),
    "serve": LazyCommand(
        "serve",
        "Serve the HTTP API: workflows, runs, approvals, audit and live events, with API keys "
        "or OIDC tokens. On SQLite it executes runs itself; on PostgreSQL it enqueues them for "
        "`cadenza worker` processes.",
    ),
    "keys": LazyCommand("keys", "API keys for cadenza serve: create, list, revoke."),
}


class _Commands(LazyGroup):
    lazy = COMMANDS
    package = "cadenza.cli"

    @staticmethod
    def root() -> typer.Typer:
        return app


app = typer.Typer(
    name="cadenza",
    cls=_Commands,
    help="Durable, observable workflows for multi-agent AI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("cadenza")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        sys.stdout.write(f"cadenza {number}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Durable, observable workflows for multi-agent AI."""
    from cadenza.runtime.loader import cwd_importable

    # Targets (``orders:wf``), handler modules and the targets stored with runs name modules
    # relative to where the command is run, as they would be for ``python -m``.
    cwd_importable()


out = Console()


err = Console(stderr=True)


T = TypeVar("T")


DbOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "--db",
        envvar=["CADENZA_STORE", "CADENZA_DB"],
        help="Where runs are kept: a SQLite file (default ./cadenza.db), sqlite:///PATH, or a "
        "postgresql:// URL.",
        show_default=False,
    ),
]


LogOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="Also log every event at this level or above: DEBUG, INFO, WARNING or ERROR "
        "(to stderr; default: only the progress lines).",
        show_default=False,
    ),
]


HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Module(s) holding the handlers of a YAML/JSON workflow (repeatable).",
    ),
]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


ActorOption = Annotated[str, typer.Option("--as", help="Who decides (a user in cadenza.toml).")]


CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why.")]


def _control_escapes(*, one_line: bool) -> dict[int, str]:
    """What :func:`literal` shows instead of each control character: the C0 controls (ESC,
    which starts every ANSI sequence, included) but tab, and newline unless ``one_line``;
    DEL and the C1 controls (U+009B is a one-character CSI to some terminals); and the Unicode
    bidirectional controls, which make a terminal show text in another order than it is."""
    codes = (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    kept = {ord("\t")} if one_line else {ord("\t"), ord("\n")}
    named = {ord("\n"): "\\n", ord("\r"): "\\r"}
    return {
        c: named.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
        for c in codes
        if c not in kept
    }


_VISIBLE = _control_escapes(one_line=False)
_ONE_LINE = _control_escapes(one_line=True)
# Inside JSON strings: the same characters as JSON escapes (the encoder escapes C0 already).
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in _VISIBLE if c >= 0x7F}


def literal(value: object, *, one_line: bool = False, style: str = "") -> Text:
    """``value`` as text shown exactly as written: no markup or emoji codes read in it, and
    its control characters shown as escapes (``\\x1b``, ``\\r``) rather than sent to the
    terminal (newlines kept unless ``one_line``: a one-line message stays one line)."""
    return Text(str(value).translate(_ONE_LINE if one_line else _VISIBLE), style=style)


def print_error(message: str) -> None:
    """Print ``message`` as one ``error:`` line on stderr, literally."""
    line = Text.assemble(("error:", "bold red"), " ", literal(message, one_line=True))
    err.print(line, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one ``error:`` line on stderr and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]], *, runs: Sequence[str] = ()) -> T:
    """Run the command's coroutine; a :class:`CadenzaError` is one line and exit 2, an
    interrupt names how to continue the ``runs`` it left unfinished."""
    import asyncio  # not at the top: ``--help`` needs no event loop (asyncio costs ~30 ms)

    try:
        return asyncio.run(coro_fn())
    except CadenzaError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        how = " and ".join(f"`cadenza resume {run_id}`" for run_id in runs) or "`cadenza resume`"
        fail(f"interrupted; continue with {how}", 130)


def configure_logs(level: str | None, *, json: bool | None = None) -> list[Any]:
    """Set up the loggers and return the observers that log events: none unless ``level`` was
    asked for. Progress lines report a command's steps; logging each event too would print
    every failure twice."""
    from cadenza.observe.logging import LoggingObserver, configure_logging

    try:
        configure_logging(level or "ERROR", json=json)
    except KeyError:
        fail(f"--log-level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    return [LoggingObserver()] if level else []


def _engine(db: str | None, *observers: Any, create: bool = False) -> Engine:
    """An engine over the store ``db`` names. Only commands that start runs (``run``,
    ``worker``) pass ``create``: the others act on runs that must already exist, and a
    mistyped path must not leave an empty database behind."""
    from cadenza.engine import Engine
    from cadenza.store.url import open_store

    return Engine(open_store(db, create=create), observers=observers)


@asynccontextmanager
async def opened_store(db: str | None) -> AsyncIterator[Store]:
    """The store ``db`` names, opened for reading (never created), without an engine: listing
    runs needs neither the engine's imports nor its background tasks."""
    from cadenza.store.url import open_store

    store = open_store(db, create=False)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def resolve(store: Store, run_id: str) -> RunId:
    """The run ``run_id`` names: the id itself or a unique prefix of one."""
    return await store.resolve_run_id(run_id)


def parse_input(text: str | None) -> dict[str, Any]:
    """``--input`` as JSON text, ``@file.json``, or ``-`` for standard input."""
    if text is None:
        return {}
    source = "--input"
    if text == "-":
        text, source = sys.stdin.read(), "standard input"
    elif text.startswith("@"):
        path = Path(text[1:])
        try:
            text, source = path.read_text(), str(path)
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON in {source}: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(value, dict):
        fail(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def dumps(value: Any) -> str:
    """``value`` as indented JSON with no raw control characters: the encoder escapes the C0
    ones, and DEL, C1 and bidirectional controls are escaped here (they occur only inside
    strings, where an escape means the same character)."""
    import pydantic_core

    text = pydantic_core.to_json(value, indent=2, fallback=repr).decode()
    return text.translate(_JSON_ESCAPES)


def print_json(value: Any) -> None:
    """Print ``value`` as highlighted JSON on stdout (``Console.print_json`` would decode and
    encode it again, putting back the characters :func:`dumps` escapes)."""
    from rich.highlighter import JSONHighlighter

    text = JSONHighlighter()(Text(dumps(value), no_wrap=True, overflow=None))
    out.print(text, soft_wrap=True)


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "run_id": result.run_id,
                "workflow": result.workflow,
                "status": str(result.status),
                "error": result.error,
                "state": result.state,
            }
        )
    else:
        color = "green" if result.status is WorkflowStatus.COMPLETED else "red"
        status = (str(result.status), f"bold {color}")
        out.print(Text.assemble("run ", literal(result.run_id), " ", status))
        if result.error:
            out.print(literal(result.error, style="red"), soft_wrap=True)
        print_json(result.state)


def _act(
    db: str | None,
    run_id: str,
    action: Callable[[Engine, RunId], Coroutine[Any, Any, Any]],
    as_json: bool,
) -> None:
    """Do something to the run ``run_id`` names (an id or a unique prefix) with live
    progress, print where it ended, exit accordingly."""
    from cadenza.cli._progress import Progress

    observers = configure_logs(None)
    progress = Progress(err)

    async def main() -> Any:
        async with _engine(db, *observers, progress) as engine:
            rid = await resolve(engine.store, run_id)
            progress.known(rid)
            try:
                return await action(engine, rid)
            finally:
                progress.close()

    result = _run(main, runs=progress.runs)
    _print_result(result, as_json)
    raise typer.Exit(_exit_code(result.status))


def _exit_code(status: WorkflowStatus) -> int:
    """0 for a run that completed or waits (for an approval, a signal) as designed."""
    return 0 if status in (WorkflowStatus.COMPLETED, WorkflowStatus.WAITING_APPROVAL) else 1


def _count_steps(graph: Any) -> int:
    total = 0
    for step in graph.steps.values():
        total += 1
        for sub in (*step.branches, *([step.body] if step.body is not None else [])):
            total += _count_steps(sub)
    return total


def _parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        fail(f"--set {text!r}: expected KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _record_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "workflow": r.workflow,
        "version": r.version,
        "status": str(r.status),
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "error": r.error,
        "input": r.input,
        "target": r.target,
    }


def _status(status: WorkflowStatus) -> Text:
    color = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(status, "cyan")
    return Text(str(status), style=color)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fitted_table(
    columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[Text | str]], width: int
) -> Table:
    """A table of ``rows`` under ``columns`` (``(heading, whole)``) that fits ``width``.

    Columns marked ``whole`` (ids, statuses, step paths: what one copies into the next
    command) are never cut; the others share the width that is left and are cut with an
    ellipsis, and one left narrower than 3 cells is dropped from the right. Rich's own
    shrinking squeezes every column alike, cutting run ids at 80 columns."""
    from rich import box
    from rich.table import Table

    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    natural = [
        max([len(heading), *(row[i].cell_len for row in cells)])
        for i, (heading, _) in enumerate(columns)
    ]
    shown = list(range(len(columns)))
    while True:
        widths = _share(
            [natural[i] for i in shown],
            [columns[i][1] for i in shown],
            width - 2 * (len(shown) - 1),
        )
        cramped = [i for i, w in zip(shown, widths, strict=True) if w < min(3, natural[i])]
        if not cramped:
            break
        shown.remove(cramped[-1])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for i, w in zip(shown, widths, strict=True):
        whole = columns[i][1]
        heading = Text(columns[i][0])  # Text, not str: no markup or emoji lookup to load
        table.add_column(
            heading, width=w, no_wrap=not whole, overflow="fold" if whole else "ellipsis"
        )
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    return table


def _share(natural: list[int], whole: list[bool], room: int) -> list[int]:
    """Widths: whole columns their natural width; the rest fill what remains, the narrowest
    first, each at most its natural width (so a short column is not padded)."""
    widths = [n if w else 0 for n, w in zip(natural, whole, strict=True)]
    left = room - sum(widths)
    flexible = sorted((n, i) for i, (n, w) in enumerate(zip(natural, whole, strict=True)) if not w)
    for k, (n, i) in enumerate(flexible):
        fair = max(left, 0) // (len(flexible) - k)
        widths[i] = min(n, fair)
        left -= widths[i]
    return widths
