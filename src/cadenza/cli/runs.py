"""Runs: list, show, cancel, re-drive, fork, pause and unpause."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from cadenza.cli._app import (
    DbOption,
    _act,
    _engine,
    _parse_assignment,
    _record_json,
    _run,
    _secs,
    _status,
    _when,
    app,
    err,
    fail,
    fitted_table,
    literal,
    opened_store,
    out,
    print_json,
    resolve,
)
from cadenza.core.status import WorkflowStatus

if TYPE_CHECKING:
    from cadenza.core.events import Event

runs_app = typer.Typer(
    help="List, inspect, cancel, re-drive, fork and pause runs.", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")

RunArgument = Annotated[str, typer.Argument(help="The run id (or a unique start of one).")]


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
        async with opened_store(db) as store:
            return await store.list_runs(status=statuses, workflow=workflow, limit=limit)

    records = _run(main)
    if as_json:
        print_json([_record_json(r) for r in records])
        return
    columns = [("run", True), ("status", True), ("workflow", False), ("created", False)]
    columns += [("duration", False), ("error", False)]
    rows = [
        (
            literal(r.run_id, one_line=True),
            _status(r.status),
            literal(r.workflow, one_line=True),
            _when(r.created_at),
            _secs(r.updated_at - r.created_at) if r.status.terminal else "",
            literal((r.error or "")[:200], one_line=True),
        )
        for r in records
    ]
    out.print(fitted_table(columns, rows, out.width))


@runs_app.command("show")
def runs_show(
    run_id: RunArgument,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's status, timeline of steps with durations, model usage, and its final or
    current state."""
    from cadenza.agents.usage import run_usage
    from cadenza.runtime.timeline import timeline

    async def main() -> tuple[Any, Any, list[Event], tuple[object, frozenset[WorkflowStatus]]]:
        async with _engine(db) as engine:
            rid = await resolve(engine.store, run_id)
            record = await engine.store.get_run(rid)
            result = await engine.result(rid)
            events = await engine.store.read_events(rid)
            return record, result, events, await _logged_status(engine.store, rid)

    record, result, events, (stored, logged) = _run(main)
    record = _status_from_log(record, stored, logged)
    rows = timeline(events)
    usage = run_usage(events)
    if as_json:
        print_json(
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
                "usage": usage.to_json() if usage.model_calls else None,
            }
        )
        return
    heading = (literal(record.workflow, one_line=True, style="bold"), " run ")
    out.print(Text.assemble(*heading, literal(record.run_id), "  ", _status(record.status)))
    out.print(
        Text.assemble(
            "version ",
            literal(record.version, one_line=True),
            f" · created {_when(record.created_at)} · updated {_when(record.updated_at)} · "
            f"{len(events)} events",
        )
    )
    if record.error:
        out.print(literal(record.error, style="red"), soft_wrap=True)
    columns = [("step", True), ("status", True), ("attempts", True), ("duration", False)]
    columns.append(("detail", False))
    cells = []
    for r in rows:
        detail = (
            r.error
            or r.decided_by
            or (f"→ {', '.join(r.route) or '(none)'}" if r.route is not None else "")
        )
        cells.append(
            (
                literal(r.path, one_line=True),
                r.status,
                str(r.attempts or ""),
                _secs(r.duration),
                literal(detail, one_line=True),
            )
        )
    out.print(fitted_table(columns, cells, out.width))
    if usage.model_calls:
        out.print(literal(f"model usage: {usage.summary()}"))
    print_json(result.state)


async def _logged_status(store: Any, run_id: str) -> tuple[object, frozenset[WorkflowStatus]]:
    """The run row's status as stored and the statuses its log allows, from one consistent
    read (so that a run moving on meanwhile cannot make them disagree)."""
    from cadenza.core.ids import RunId
    from cadenza.observe.audit_verify import check_log, log_statuses

    stored = await store.read_stored(RunId(run_id))
    _, events = check_log(stored.run_id, stored.events)  # the events up to any damage
    return (stored.run.status if stored.run is not None else None), log_statuses(events)


def _status_from_log(record: Any, stored: object, logged: frozenset[WorkflowStatus]) -> Any:
    """The record to show, with the status its log says: the ``runs`` row is outside the
    audit chain, so where the two disagree the row was edited, and a warning says so."""
    if stored in logged:
        return record
    said = " or ".join(sorted(logged)) or "no status"
    err.print(
        literal(
            f"warning: the stored status of run {record.run_id} is {stored}, but its log says "
            f"{said}; showing the log's. Run `cadenza audit verify {record.run_id}`.",
            one_line=True,
            style="yellow",
        ),
        soft_wrap=True,
    )
    return record.evolve(status=next(iter(logged))) if len(logged) == 1 else record


@runs_app.command("cancel")
def runs_cancel(
    run_id: RunArgument,
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason")] = "cancelled from the command line",
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Cancel an unfinished run."""

    async def main() -> Any:
        async with _engine(db) as engine:
            return await engine.cancel(await resolve(engine.store, run_id), reason, actor=actor)

    result = _run(main)
    out.print(Text.assemble("run ", literal(result.run_id), " ", _status(result.status)))


@runs_app.command("retry")
def runs_retry(
    run_id: Annotated[str, typer.Argument(help="A FAILED or CANCELLED run (id or prefix).")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Re-drive a failed run from the failed step, as a new run linked to it."""

    _act(db, run_id, lambda engine, rid: engine.redrive(rid, actor=actor), as_json)


@runs_app.command("fork")
def runs_fork(
    run_id: Annotated[str, typer.Argument(help="The run to start from (id or prefix).")],
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

    _act(
        db,
        run_id,
        lambda engine, rid: engine.fork(rid, after=step, set=patch, actor=actor),
        as_json,
    )


@runs_app.command("pause")
def runs_pause(
    run_id: Annotated[
        str, typer.Argument(help="A RUNNING run not executing elsewhere (id or prefix).")
    ],
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason")] = "paused from the command line",
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Pause a run: it is not resumed until `cadenza runs unpause`."""

    async def main() -> str:
        async with _engine(db) as engine:
            rid = await resolve(engine.store, run_id)
            await engine.pause(rid, reason, actor=actor)
            return rid

    paused = _run(main)
    out.print(Text.assemble("run ", literal(paused), " ", _status(WorkflowStatus.PAUSED)))


@runs_app.command("unpause")
def runs_unpause(
    run_id: Annotated[str, typer.Argument(help="A PAUSED run (id or prefix).")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Let a paused run go on, here, until it finishes."""

    _act(db, run_id, lambda engine, rid: engine.unpause(rid, actor=actor), as_json)
