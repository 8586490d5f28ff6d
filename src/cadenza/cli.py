"""The ``cadenza`` command: run workflows, list and inspect runs, resume unfinished ones."""

from __future__ import annotations

import asyncio
import contextlib
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
from rich.table import Table

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

out = Console()
err = Console(stderr=True)

T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CADENZA_DB",
        help="SQLite file holding runs (default ./cadenza.db), or a postgresql:// URL.",
        show_default=False,
    ),
]
LogOption = Annotated[
    str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (logs go to stderr).")
]


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


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="module:attribute or path/to/file.py[:attribute]")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="JSON object, @file.json, or - for stdin.")
    ] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress.")] = False,
    log_level: LogOption = "WARNING",
    handlers: HandlersOption = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="Who starts it (for workflows with allowed_users).")
    ] = None,
) -> None:
    """Run a workflow to completion and print its final status and state."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import load_target

    configure_logging(log_level)
    values = parse_input(input)
    try:
        workflow, canonical = load_target(target, handler_modules=handlers or [])
    except SpecError as exc:
        for line in exc.lines():
            err.print(line, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except CadenzaError as exc:
        fail(str(exc))
    observers: list[Any] = [LoggingObserver()]
    if not quiet:
        observers.append(_Progress(err))

    async def main() -> Any:
        async with _engine(db, *observers) as engine:
            return await engine.run(workflow, values, target=canonical, actor=actor)

    result = _run(main)
    _print_result(result, as_json)
    raise typer.Exit(_exit_code(result.status))


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


approvals_app = typer.Typer(help="Approvals waiting for a decision.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
ActorOption = Annotated[str, typer.Option("--as", help="Who decides (a user in cadenza.toml).")]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why.")]


@approvals_app.command("list")
def approvals_list(
    db: DbOption = None,
    for_user: Annotated[
        str | None, typer.Option("--for", help="Only those this user may decide.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List approvals waiting for a decision: run, step, approvers, since when."""

    async def main() -> list[dict[str, Any]]:
        async with _engine(db) as engine:
            return await engine.pending_approvals(for_user=for_user)

    pending = _run(main)
    if as_json:
        out.print_json(dumps(pending))
        return
    table = Table("step", "approvers", "approved by", "since", "summary")
    table.add_column("run", no_wrap=True, min_width=32)
    for p in pending:
        table.add_row(
            p["step"],
            ", ".join(p["approvers"]),
            ", ".join(p["approved_by"]),
            _when(p["since"]),
            p.get("summary") or "",
            p["run_id"],
        )
    out.print(table)


def _decide(
    run_id: str, step: str, actor: str, approve: bool, comment: str, db: str | None
) -> None:
    _act(
        db,
        lambda engine: engine.decide(run_id, step, actor=actor, approve=approve, comment=comment),
        False,
    )


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The waiting run.")],
    step: Annotated[str, typer.Argument(help="The approval step.")],
    actor: ActorOption,
    comment: CommentOption = "",
    db: DbOption = None,
) -> None:
    """Approve a waiting step; with its quorum reached the run goes on here."""
    _decide(run_id, step, actor, True, comment, db)


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(help="The waiting run.")],
    step: Annotated[str, typer.Argument(help="The approval step.")],
    actor: ActorOption,
    comment: CommentOption = "",
    db: DbOption = None,
) -> None:
    """Reject a waiting step: the run fails (after compensating what it declared)."""
    _decide(run_id, step, actor, False, comment, db)


@app.command()
def signal(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    name: Annotated[str, typer.Argument(help="The signal's name.")],
    payload: Annotated[str, typer.Option("--payload", help="JSON value.")] = "null",
    actor: Annotated[str, typer.Option("--as", help="Who sends it.")] = "",
    db: DbOption = None,
) -> None:
    """Deliver a named external event to a run."""
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON in --payload: {exc.msg} at line {exc.lineno} column {exc.colno}")

    _act(db, lambda engine: engine.signal(run_id, name, value, actor=actor), False)


audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    run_id: Annotated[str | None, typer.Argument(help="One run; default: every run.")] = None,
    db: DbOption = None,
) -> None:
    """Recompute the hash chain of each run's log; name the first broken event."""
    from cadenza.observe.audit import verify

    async def main() -> tuple[int, list[str]]:
        async with _engine(db) as engine:
            if run_id:
                ids = [(await engine.store.get_run(run_id)).run_id]
            else:
                ids = [r.run_id for r in await engine.store.list_runs(limit=10_000_000)]
            problems = []
            for rid in ids:
                broken = verify(await engine.store.read_events(rid))
                if broken is not None:
                    problems.append(str(broken))
            return len(ids), problems

    checked, problems = _run(main)
    for problem in problems:
        err.print(f"[bold red]broken:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    out.print(f"ok: {checked} run(s), every event chain verifies", highlight=False)


@audit_app.command("export")
def audit_export(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    db: DbOption = None,
) -> None:
    """Write a run's compliance record: who, what, when and why, for every event."""
    from cadenza.observe.audit import export

    if fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, got {fmt!r}")

    async def main() -> str:
        async with _engine(db) as engine:
            return export(await engine.store.read_events(run_id), fmt)  # type: ignore[arg-type]

    sys.stdout.write(_run(main))


HandlersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--handlers",
        help="Module(s) holding the handlers of a YAML/JSON workflow (repeatable).",
    ),
]


@app.command()
def validate(
    target: Annotated[str, typer.Argument(help="A YAML/JSON workflow file, or module:attribute.")],
    handlers: HandlersOption = None,
) -> None:
    """Check a workflow definition; print each problem as FILE:LINE:COL: message."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import load_target

    try:
        workflow, _ = load_target(target, handler_modules=handlers or [])
        ir = workflow.compile()
    except SpecError as exc:
        for line in exc.lines():
            err.print(line, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except CadenzaError as exc:
        err.print(f"{target}: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.print(
        f"ok: {ir.name} ({_count_steps(ir.graph)} steps, version {ir.version})", highlight=False
    )


@app.command()
def graph(
    target: Annotated[str, typer.Argument(help="A YAML/JSON workflow file, or module:attribute.")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="mermaid, dot, svg or png.")
    ] = "mermaid",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    handlers: HandlersOption = None,
) -> None:
    """Draw a workflow as Mermaid (default) or DOT text, or as SVG/PNG with Graphviz."""
    from cadenza.graph.render import render
    from cadenza.runtime.loader import load_target

    try:
        workflow, _ = load_target(target, handler_modules=handlers or [])
        drawn = render(workflow.compile(), fmt, output)
    except CadenzaError as exc:
        fail(str(exc), 1)
    if output is None:
        if isinstance(drawn, bytes):
            fail(f"{fmt} is binary: write it to a file with --output", 1)
        sys.stdout.write(drawn if drawn.endswith("\n") else drawn + "\n")
    else:
        err.print(f"wrote {output}", highlight=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the YAML/JSON workflow format (for editor completion)."""
    from cadenza.graph.spec_schema import workflow_schema

    sys.stdout.write(json.dumps(workflow_schema(), indent=2) + "\n")


def _count_steps(graph: Any) -> int:
    total = 0
    for step in graph.steps.values():
        total += 1
        for sub in (*step.branches, *([step.body] if step.body is not None else [])):
            total += _count_steps(sub)
    return total


@app.command()
def resume(
    run_id: Annotated[
        str | None, typer.Argument(help="A run id; default: every unfinished run.")
    ] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    log_level: LogOption = "WARNING",
) -> None:
    """Continue unfinished runs (after a crash) from their last committed step."""
    configure_logging(log_level)

    async def main() -> tuple[list[Any], dict[str, str]]:
        async with _engine(db, LoggingObserver(), _Progress(err)) as engine:
            if run_id:
                return [await engine.resume(run_id)], {}
            report = await engine.resume_all()
            return report.results, report.errors

    results, errors = _run(main)
    if not results and not errors:
        err.print("nothing to resume")
    for result in results:
        _print_result(result, as_json)
    for rid, reason in errors.items():
        err.print(f"[bold red]error:[/] run {rid} not resumed: {reason}", highlight=False)
    failed = errors or any(r.status is not WorkflowStatus.COMPLETED for r in results)
    raise typer.Exit(1 if failed else 0)


@app.command()
def worker(
    db: DbOption = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between looks for work.", min=0.05)
    ] = 1.0,
    grace: Annotated[
        float, typer.Option(help="Seconds to let runs in flight finish on SIGTERM.", min=0)
    ] = 10.0,
    once: Annotated[
        bool, typer.Option("--once", help="Pick up what is due, finish, exit.")
    ] = False,
    log_level: LogOption = "INFO",
) -> None:
    """Keep runs going: resume those whose process died and those whose approval timed out,
    until SIGTERM or Ctrl-C (runs still in flight after --grace stay resumable)."""
    import signal as signals

    configure_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reported: set[str] = set()
        async with _engine(db, LoggingObserver()) as engine:
            while not stop.is_set():
                for run_id, why in (await engine.pick_up()).items():
                    if run_id not in reported:
                        reported.add(run_id)
                        err.print(f"[yellow]not resumed[/] {run_id}: {why}", highlight=False)
                if once:
                    await engine.drain()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
            left = await engine.drain(grace)
            if left:
                err.print(f"{left} run(s) still in flight stay resumable", highlight=False)

    _run(main)


@runs_app.command("list")
def runs_list(
    db: DbOption = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Filter by status (repeatable).")
    ] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List runs, newest first."""
    statuses = None
    if status:
        try:
            statuses = [WorkflowStatus(s.upper()) for s in status]
        except ValueError as exc:
            fail(f"{exc}; statuses are {', '.join(WorkflowStatus)}")

    async def main() -> list[Any]:
        async with _engine(db) as engine:
            return await engine.store.list_runs(status=statuses, workflow=workflow, limit=limit)

    records = _run(main)
    if as_json:
        out.print_json(dumps([_record_json(r) for r in records]))
        return
    table = Table("workflow", "status", "created", "duration", "error")
    table.add_column("run", no_wrap=True, min_width=32)
    for r in records:
        table.add_row(
            r.run_id,
            r.workflow,
            _status(r.status),
            _when(r.created_at),
            _secs(r.updated_at - r.created_at) if r.status.terminal else "",
            (r.error or "")[:60],
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's status, timeline of steps with durations, and its final or current state."""
    from cadenza.runtime.timeline import timeline

    async def main() -> tuple[Any, Any, list[Event]]:
        async with _engine(db) as engine:
            record = await engine.store.get_run(run_id)
            result = await engine.result(run_id)
            return record, result, await engine.store.read_events(run_id)

    record, result, events = _run(main)
    rows = timeline(events)
    if as_json:
        out.print_json(
            dumps(
                {
                    **_record_json(record),
                    "state": result.state,
                    "timeline": [
                        {
                            "step": r.path,
                            "status": r.status,
                            "attempts": r.attempts,
                            "duration_s": r.duration,
                            "error": r.error,
                            "route": r.route,
                            "decided_by": r.decided_by,
                        }
                        for r in rows
                    ],
                }
            )
        )
        return
    out.print(
        f"[bold]{record.workflow}[/] run {record.run_id}  {_status(record.status)}", highlight=False
    )
    out.print(
        f"version {record.version} · created {_when(record.created_at)} · "
        f"updated {_when(record.updated_at)} · {len(events)} events",
        highlight=False,
    )
    if record.error:
        out.print(f"[red]{record.error}[/]", highlight=False, soft_wrap=True)
    table = Table("step", "status", "attempts", "duration", "detail")
    for r in rows:
        detail = (
            r.error
            or r.decided_by
            or (f"→ {', '.join(r.route) or '(none)'}" if r.route is not None else "")
        )
        table.add_row(r.path, r.status, str(r.attempts or ""), _secs(r.duration), detail)
    out.print(table)
    out.print_json(dumps(result.state))


@runs_app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason")] = "cancelled from the command line",
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Cancel an unfinished run."""

    async def main() -> Any:
        async with _engine(db) as engine:
            return await engine.cancel(run_id, reason, actor=actor)

    result = _run(main)
    out.print(f"run {result.run_id} {_status(result.status)}", highlight=False)


@runs_app.command("retry")
def runs_retry(
    run_id: Annotated[str, typer.Argument(help="A FAILED or CANCELLED run.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Re-drive a failed run from the failed step, as a new run linked to it."""

    _act(db, lambda engine: engine.redrive(run_id, actor=actor), as_json)


@runs_app.command("fork")
def runs_fork(
    run_id: Annotated[str, typer.Argument(help="The run to start from.")],
    step: Annotated[str, typer.Option("--from", help="Start after this recorded step.")],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE to change in the state (VALUE as JSON, else text)."),
    ] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Time travel: a new run from the state after STEP of RUN, optionally changed."""
    patch = dict(_parse_assignment(text) for text in sets or [])

    _act(db, lambda engine: engine.fork(run_id, after=step, set=patch, actor=actor), as_json)


@runs_app.command("pause")
def runs_pause(
    run_id: Annotated[str, typer.Argument(help="A RUNNING run not executing elsewhere.")],
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason")] = "paused from the command line",
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Pause a run: it is not resumed until `cadenza runs unpause`."""

    async def main() -> None:
        async with _engine(db) as engine:
            await engine.pause(run_id, reason, actor=actor)

    _run(main)
    out.print(f"run {run_id} {_status(WorkflowStatus.PAUSED)}", highlight=False)


@runs_app.command("unpause")
def runs_unpause(
    run_id: Annotated[str, typer.Argument(help="A PAUSED run.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Let a paused run go on, here, until it finishes."""

    _act(db, lambda engine: engine.unpause(run_id, actor=actor), as_json)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
