"""The command line's shared parts: the app and its command groups, the consoles, common
options, input parsing and output.

Text that comes from outside this package's own code (a user, a definition, a step, a model, a
store, an exception) is printed through :func:`literal` or :func:`print_json`, never as part
of a markup string: Rich would read ``[/path]`` or ``[link=...]`` in it as markup (losing the
text or crashing) and ``:smile:`` as an emoji, and a terminal would act on the escape
sequences in it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import pydantic_core
import typer
from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.text import Text

from cadenza.errors import CadenzaError
from cadenza.observe.logging import LoggingObserver, configure_logging
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.status import WorkflowStatus

app = typer.Typer(
    name="cadenza",
    help="Durable, observable workflows for multi-agent AI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


runs_app = typer.Typer(help="List, inspect and cancel runs.", no_args_is_help=True)


app.add_typer(runs_app, name="runs")


approvals_app = typer.Typer(help="Approvals waiting for a decision.", no_args_is_help=True)


app.add_typer(approvals_app, name="approvals")


audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


app.add_typer(audit_app, name="audit")


out = Console()


err = Console(stderr=True)


T = TypeVar("T")


DbOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "--db",
        envvar=["CADENZA_STORE", "CADENZA_DB"],
        help="Where runs are kept: a SQLite file (default ./cadenza.db) or a postgresql:// URL.",
        show_default=False,
    ),
]


LogOption = Annotated[
    str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (logs go to stderr).")
]


HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Module(s) holding the handlers of a YAML/JSON workflow (repeatable).",
    ),
]


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


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(coro_fn())
    except CadenzaError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; unfinished runs can be continued with `cadenza resume`", 130)


def _engine(db: str | None, *observers: Any) -> Any:
    from cadenza.runtime.engine import Engine

    return Engine(db, observers=observers)


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
    text = pydantic_core.to_json(value, indent=2, fallback=repr).decode()
    return text.translate(_JSON_ESCAPES)


def print_json(value: Any) -> None:
    """Print ``value`` as highlighted JSON on stdout (``Console.print_json`` would decode and
    encode it again, putting back the characters :func:`dumps` escapes)."""
    text = JSONHighlighter()(Text(dumps(value), no_wrap=True, overflow=None))
    out.print(text, soft_wrap=True)


class _Progress:
    """Prints each step as it finishes (stderr), so stdout holds only the result."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        kind = event.type
        path = literal(event.path, one_line=True)
        if kind is EventType.STEP_STARTED:
            self.started.setdefault(event.path, event.ts)
        elif kind is EventType.STEP_COMPLETED:
            line = Text.assemble(("✓", "green"), " ", path)
            route = event.data.get("route")
            if route is not None:
                line.append_text(literal(f" → {', '.join(route) or '(no route)'}", one_line=True))
            begun = event.data.get("started_at") or self.started.get(event.path)
            if begun:
                line.append(f" {(event.ts - begun) * 1000:.1f} ms", style="dim")
            self.console.print(line)
        elif kind is EventType.STEP_FAILED:
            mark = ("↻", "yellow") if event.data.get("retry") else ("✗", "red")
            error = literal(event.data.get("error"), one_line=True)
            self.console.print(
                Text.assemble(mark, " ", path, f" (attempt {event.attempt}): ", error)
            )
        elif kind is EventType.STEP_SKIPPED:
            self.console.print(Text.assemble("- ", path, " skipped", style="dim"))
        elif kind is EventType.TIMER_SET:
            wait = event.data["fire_at"] - time.time()
            self.console.print(Text.assemble(("⏲", "cyan"), " ", path, f" waiting {wait:.1f}s"))


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


def _act(db: str | None, action: Callable[[Any], Coroutine[Any, Any, Any]], as_json: bool) -> None:
    """Do something to a run with live progress, print where it ended, exit accordingly."""
    configure_logging("WARNING")

    async def main() -> Any:
        async with _engine(db, LoggingObserver(), _Progress(err)) as engine:
            return await action(engine)

    result = _run(main)
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
