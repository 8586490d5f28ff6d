"""Running and looking after workflows: run, resume, worker; checking and drawing definitions."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
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
    literal,
    out,
    parse_input,
    print_error,
    print_json,
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
    enqueue: Annotated[
        bool,
        typer.Option(
            "--enqueue",
            "--detach",
            help="Only record the run, for a `cadenza worker` to execute; print its id.",
        ),
    ] = False,
    queue: Annotated[str, typer.Option("--queue", help="The queue it goes to.")] = "default",
) -> None:
    """Run a workflow to completion and print its final status and state (with --enqueue:
    hand it to the workers and print its id)."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import load_target

    configure_logging(log_level)
    values = parse_input(input)
    try:
        workflow, canonical = load_target(target, handler_modules=handlers or [])
    except SpecError as exc:
        _print_lines(exc.lines())
        raise typer.Exit(2) from None
    except CadenzaError as exc:
        fail(str(exc))
    if enqueue:
        _enqueue(db, workflow, values, canonical, actor, queue, as_json)
        return
    observers: list[Any] = [LoggingObserver()]
    if not quiet:
        observers.append(_Progress(err))

    async def main() -> Any:
        async with _engine(db, *observers) as engine:
            return await engine.run(workflow, values, target=canonical, actor=actor, queue=queue)

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
        print_error(f"run {rid} not resumed: {reason}")
    failed = errors or any(r.status is not WorkflowStatus.COMPLETED for r in results)
    raise typer.Exit(1 if failed else 0)


def _enqueue(
    db: str | None,
    workflow: Any,
    values: dict[str, Any],
    target: str,
    actor: str | None,
    queue: str,
    as_json: bool,
) -> None:
    async def main() -> str:
        async with _engine(db) as engine:
            return await engine.submit(workflow, values, target=target, actor=actor, queue=queue)

    run_id = _run(main)
    if as_json:
        print_json({"run_id": run_id, "queue": queue, "status": "INITIALIZING"})
    else:
        out.print(literal(run_id))


@app.command()
def worker(
    db: DbOption = None,
    workflows: Annotated[
        list[str] | None,
        typer.Option(
            "--workflow",
            "-w",
            help="A workflow this worker executes (module:attribute or file; repeatable). "
            "Default: any run whose definition can be imported from its target.",
        ),
    ] = None,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="A queue to serve (repeatable; default: all)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Runs executed at once.", min=1)
    ] = 16,
    interval: Annotated[
        float, typer.Option(help="Seconds between looks for work without a hint.", min=0.01)
    ] = 1.0,
    lease: Annotated[
        float,
        typer.Option(
            help="Seconds a claim lasts unrenewed (a dead worker's runs wait it).", min=0.1
        ),
    ] = 30.0,
    grace: Annotated[
        float, typer.Option(help="Seconds to let steps in flight finish on SIGTERM.", min=0)
    ] = 10.0,
    listen: Annotated[
        bool, typer.Option("--listen/--no-listen", help="Wake on the store's hints (NOTIFY).")
    ] = True,
    once: Annotated[
        bool, typer.Option("--once", help="Execute what is due, finish, exit.")
    ] = False,
    handlers: HandlersOption = None,
    log_level: LogOption = "INFO",
) -> None:
    """Claim and execute runs from the store until SIGTERM: queued runs, runs whose worker
    died, timers and approvals that are due, commands to runs held here.

    On SIGTERM (or SIGINT) it starts no new steps and lets those in flight finish (--grace).
    Then it hands its runs back, so that other workers continue them at once."""
    import signal as signals

    from cadenza.runtime.loader import load_target
    from cadenza.runtime.worker import Worker

    configure_logging(log_level)
    known: dict[str, Any] = {}
    for target in workflows or []:
        try:
            loaded, canonical = load_target(target, handler_modules=handlers or [])
        except CadenzaError as exc:
            fail(f"--workflow {target}: {exc}")
        known[canonical] = loaded

    async def main() -> None:
        from cadenza.runtime.engine import Engine

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        engine = Engine(db, observers=[LoggingObserver()], lease_seconds=lease)
        runner = Worker(
            engine,
            targets=known,
            queues=queues or None,
            concurrency=concurrency,
            poll_interval=interval,
            listen=listen,
        )
        try:
            await runner.run(stop, once=once)
        finally:
            interrupted = await runner.shutdown(0 if once else grace)
        if interrupted:
            err.print(
                f"{interrupted} run(s) had a step in flight after --grace; they continue "
                "elsewhere from their last recorded step",
                highlight=False,
            )

    _run(main)


@app.command()
def validate(
    target: Annotated[str, typer.Argument(help="A YAML/JSON workflow file, or module:attribute.")],
    handlers: HandlersOption = None,
    imports: Annotated[
        bool | None,
        typer.Option(
            "--import/--no-import",
            help="Import the handler modules and package.module:function references of a "
            "YAML/JSON file, running their code (default: only when the file's `handlers:` "
            "or --handlers names a module). --no-import checks structure, references and "
            "expressions only.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a workflow definition; print each problem as FILE:LINE:COL: message and exit 2
    when there is any. A Python target is checked by importing it."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import SPEC_SUFFIXES, load_target

    path, _, fragment = target.partition("#handlers=")
    try:
        if path.endswith(SPEC_SUFFIXES):
            from cadenza.graph.spec_compile import load_workflow_file

            modules = [*filter(None, fragment.split(",")), *(handlers or [])]
            workflow: Any = load_workflow_file(path, handler_modules=modules, imports=imports)
        elif imports is False:
            fail(f"{target}: --no-import is for YAML/JSON files; a Python target is imported")
        else:
            workflow, _ = load_target(target, handler_modules=handlers or [])
        ir = workflow.compile()
    except SpecError as exc:
        _print_lines(exc.lines())
        raise typer.Exit(2) from None
    except CadenzaError as exc:
        fail(f"{target}: {exc}")
    out.print(literal(f"ok: {ir.name} ({_count_steps(ir.graph)} steps, version {ir.version})"))


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
        err.print(literal(f"wrote {output}"))


def _print_lines(lines: Iterable[str]) -> None:
    """Problems as FILE:LINE:COL: message, one per line, literally (they quote the file)."""
    for line in lines:
        err.print(literal(line, one_line=True), soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the YAML/JSON workflow format (for editor completion)."""
    from cadenza.graph.spec_schema import workflow_schema

    sys.stdout.write(json.dumps(workflow_schema(), indent=2) + "\n")
