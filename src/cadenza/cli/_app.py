"""The command line's shared parts: the app and its command groups, the consoles, common
options, input parsing and output."""

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


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
    return pydantic_core.to_json(value, indent=2, fallback=repr).decode()


class _Progress:
    """Prints each step as it finishes (stderr), so stdout holds only the result."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        kind = event.type
        if kind is EventType.STEP_STARTED:
            self.started.setdefault(event.path, event.ts)
        elif kind is EventType.STEP_COMPLETED:
            begun = event.data.get("started_at") or self.started.get(event.path)
            took = f" [dim]{(event.ts - begun) * 1000:.1f} ms[/]" if begun else ""
            route = event.data.get("route")
            extra = f" → {', '.join(route) or '(no route)'}" if route is not None else ""
            self.console.print(f"[green]✓[/] {event.path}{extra}{took}", highlight=False)
        elif kind is EventType.STEP_FAILED:
            mark = "[yellow]↻[/]" if event.data.get("retry") else "[red]✗[/]"
            self.console.print(
                f"{mark} {event.path} (attempt {event.attempt}): {event.data.get('error')}",
                highlight=False,
            )
        elif kind is EventType.STEP_SKIPPED:
            self.console.print(f"[dim]- {event.path} skipped[/]", highlight=False)
        elif kind is EventType.TIMER_SET:
            wait = event.data["fire_at"] - time.time()
            self.console.print(f"[cyan]⏲[/] {event.path} waiting {wait:.1f}s", highlight=False)


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(
            dumps(
                {
                    "run_id": result.run_id,
                    "workflow": result.workflow,
                    "status": str(result.status),
                    "error": result.error,
                    "state": result.state,
                }
            )
        )
    else:
        color = "green" if result.status is WorkflowStatus.COMPLETED else "red"
        out.print(f"run {result.run_id} [bold {color}]{result.status}[/]", highlight=False)
        if result.error:
            out.print(f"[red]{result.error}[/]", highlight=False, soft_wrap=True)
        out.print_json(dumps(result.state))


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


def _status(status: WorkflowStatus) -> str:
    color = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(status, "cyan")
    return f"[{color}]{status}[/]"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
