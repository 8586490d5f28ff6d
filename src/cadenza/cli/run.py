"""Running and looking after workflows: run, resume, worker; checking and drawing definitions."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cadenza.cli._app import (
    DbOption,
    HandlersOption,
    JsonOption,
    LogOption,
    _count_steps,
    _engine,
    _exit_code,
    _print_result,
    _run,
    app,
    configure_logs,
    err,
    fail,
    literal,
    out,
    parse_input,
    print_error,
    print_json,
    resolve,
)
from cadenza.core.errors import CadenzaError
from cadenza.core.status import WorkflowStatus

EndpointOption = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="STEP=URL: the webhook step STEP posts to URL instead of its own endpoint (a "
        "local receiver, a staging service; repeatable). Kept with the run, so that a "
        "process that resumes or decides it posts there too.",
        show_default=False,
    ),
]


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="module:attribute or path/to/file.py[:attribute]")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="JSON object, @file.json, or - for stdin.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live progress (the run id still shows).")
    ] = False,
    log_level: LogOption = None,
    handlers: HandlersOption = None,
    endpoints: EndpointOption = None,
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
    hand it to the workers and print its id).

    The run's id is printed on stderr as it starts, so that a run interrupted half-way can be
    continued with `cadenza resume RUN`."""
    from cadenza.cli._progress import Progress

    observers = configure_logs(log_level)
    values = parse_input(input)
    workflow, canonical = _load(target, handlers, _endpoints(endpoints or []))
    if enqueue:
        _enqueue(db, workflow, values, canonical, actor, queue, as_json)
        return
    progress = Progress(err)
    if not quiet:
        observers.append(progress)

    async def main() -> Any:
        async with _engine(db, *observers, create=True) as engine:
            run_id = await engine.start(
                workflow, values, target=canonical, actor=actor, queue=queue
            )
            progress.announce(run_id, workflow.name)
            try:
                return await engine.wait(run_id)
            finally:
                progress.close()

    result = _run(main, runs=progress.runs)
    _print_result(result, as_json)
    raise typer.Exit(_exit_code(result.status))


def _load(target: str, handlers: list[str] | None, endpoints: dict[str, str]) -> tuple[Any, str]:
    """The workflow ``target`` names, and its canonical target; a problem is one line per
    problem (FILE:LINE:COL for a YAML/JSON file) and exit 2."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import load_target

    try:
        return load_target(target, handler_modules=handlers or [], endpoints=endpoints)
    except SpecError as exc:
        _print_lines(exc.lines())
        raise typer.Exit(2) from None
    except CadenzaError as exc:
        fail(str(exc))


def _endpoints(given: list[str]) -> dict[str, str]:
    """``--endpoint STEP=URL`` options as a mapping."""
    endpoints: dict[str, str] = {}
    for text in given:
        step, sep, url = text.partition("=")
        if not sep or not step.strip() or not url.strip():
            fail(f"--endpoint {text!r}: expected STEP=URL")
        if not url.startswith(("http://", "https://")):
            fail(f"--endpoint {text!r}: {url!r} is not an http(s) URL")
        endpoints[step.strip()] = url.strip()
    return endpoints


@app.command()
def resume(
    run_id: Annotated[
        str | None,
        typer.Argument(help="A run id (or a unique start of one); default: every unfinished run."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    log_level: LogOption = None,
) -> None:
    """Continue unfinished runs (after a crash) from their last committed step."""
    from cadenza.cli._progress import Progress

    progress = Progress(err)
    observers = [*configure_logs(log_level), progress]

    async def main() -> tuple[list[Any], dict[str, str]]:
        async with _engine(db, *observers) as engine:
            try:
                if run_id is not None:
                    rid = await resolve(engine.store, run_id)
                    progress.known(rid)
                    return [await engine.resume(rid)], {}
                report = await engine.resume_all()
                return report.results, report.errors
            finally:
                progress.close()

    results, errors = _run(main, runs=progress.runs)
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
        async with _engine(db, create=True) as engine:
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
    log_level: Annotated[
        str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (logs go to stderr).")
    ] = "INFO",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Log JSON lines, also on a terminal (default: JSON unless on one)."
        ),
    ] = False,
) -> None:
    """Claim and execute runs from the store until SIGTERM: queued runs, runs whose worker
    died, timers and approvals that are due, commands to runs held here.

    On SIGTERM (or SIGINT) it starts no new steps and lets those in flight finish (--grace).
    Then it hands its runs back, so that other workers continue them at once. Its output is
    its log: one line per event at --log-level and above."""
    import signal as signals

    from cadenza.runtime.loader import load_target
    from cadenza.runtime.worker import Worker

    observers = configure_logs(log_level, json=True if as_json else None)
    known: dict[str, Any] = {}
    for target in workflows or []:
        try:
            loaded, canonical = load_target(target, handler_modules=handlers or [])
        except CadenzaError as exc:
            fail(f"--workflow {target}: {exc}")
        known[canonical] = loaded

    async def main() -> None:
        from cadenza.engine import Engine
        from cadenza.store.url import open_store

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        engine = Engine(open_store(db, create=True), observers=observers, lease_seconds=lease)
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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"ok": ...} with the workflow, or with each problem\'s file, line, '
            "column, path and message.",
        ),
    ] = False,
) -> None:
    """Check a workflow definition; print each problem as FILE:LINE:COL: message and exit 2
    when there is any. A Python target is checked by importing it."""
    from cadenza.graph.spec_load import SpecError
    from cadenza.runtime.loader import SPEC_SUFFIXES, load_target, split_target

    path, fragment_modules, _ = split_target(target)
    try:
        if path.endswith(SPEC_SUFFIXES):
            from cadenza.graph.spec_compile import load_workflow_file

            modules = [*fragment_modules, *(handlers or [])]
            workflow: Any = load_workflow_file(path, handler_modules=modules, imports=imports)
        elif imports is False:
            _invalid(
                as_json,
                f"{target}: --no-import is for YAML/JSON files; a Python target is imported",
            )
        else:
            workflow, _ = load_target(target, handler_modules=handlers or [])
        ir = workflow.compile()
    except SpecError as exc:
        if as_json:
            print_json(
                {"ok": False, "problems": [_problem_json(exc.file, p) for p in exc.problems]}
            )
        else:
            _print_lines(exc.lines())
        raise typer.Exit(2) from None
    except CadenzaError as exc:
        _invalid(as_json, f"{target}: {exc}")
    steps = _count_steps(ir.graph)
    if as_json:
        print_json({"ok": True, "workflow": ir.name, "version": ir.version, "steps": steps})
    else:
        out.print(literal(f"ok: {ir.name} ({steps} steps, version {ir.version})"))


def _invalid(as_json: bool, message: str) -> NoReturn:
    """A definition that cannot be checked further: one problem, exit 2."""
    if as_json:
        print_json({"ok": False, "problems": [{"message": message}]})
        raise typer.Exit(2)
    fail(message)


def _problem_json(file: str, problem: Any) -> dict[str, Any]:
    return {
        "file": file,
        "line": problem.line,
        "column": problem.column,
        "path": problem.json_path if problem.path else None,
        "message": problem.message,
    }


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
    from cadenza.graph.render import FORMATS, render

    if fmt not in FORMATS:
        fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "png" and output is None:
        fail("png is binary: write it to a file with --output")
    workflow, _ = _load(target, handlers, {})
    try:
        drawn = render(workflow.compile(), fmt, output)
    except CadenzaError as exc:
        fail(str(exc), 1)
    if output is None:
        text = drawn.decode() if isinstance(drawn, bytes) else drawn  # SVG is UTF-8 text
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
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
