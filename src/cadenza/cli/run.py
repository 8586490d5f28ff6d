"""Running and looking after workflows: run, resume, worker; checking and drawing definitions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cadenza.cli._app import (
    DbOption,
    HandlersOption,
    LogOption,
    _count_steps,
    _engine,
    _exit_code,
    _print_result,
    _Progress,
    _run,
    app,
    err,
    fail,
    out,
    parse_input,
)
from cadenza.errors import CadenzaError
from cadenza.observe.logging import LoggingObserver, configure_logging
from cadenza.runtime.status import WorkflowStatus


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
    """Keep runs going until SIGTERM: resume dead processes' runs and due approvals.

    Runs still in flight after --grace seconds stay resumable."""
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
