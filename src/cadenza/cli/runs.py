"""Runs: list, show, cancel, re-drive, fork, pause and unpause."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
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
    err,
    fail,
    literal,
    out,
    print_json,
    runs_app,
)
from cadenza.runtime.events import Event
from cadenza.runtime.status import WorkflowStatus


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
        print_json([_record_json(r) for r in records])
        return
    table = Table()
    table.add_column("run", no_wrap=True, min_width=32)
    for heading in ("workflow", "status", "created", "duration", "error"):
        table.add_column(heading)
    for r in records:
        table.add_row(
            literal(r.run_id),
            literal(r.workflow),
            _status(r.status),
            _when(r.created_at),
            _secs(r.updated_at - r.created_at) if r.status.terminal else "",
            literal((r.error or "")[:60]),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's status, timeline of steps with durations, model usage, and its final or
    current state."""
    from cadenza.agents.usage import run_usage
    from cadenza.runtime.timeline import timeline

    async def main() -> tuple[Any, Any, list[Event], tuple[object, frozenset[WorkflowStatus]]]:
        async with _engine(db) as engine:
            record = await engine.store.get_run(run_id)
            result = await engine.result(run_id)
            events = await engine.store.read_events(run_id)
            return record, result, events, await _logged_status(engine.store, run_id)

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
    table = Table("step", "status", "attempts", "duration", "detail")
    for r in rows:
        detail = (
            r.error
            or r.decided_by
            or (f"→ {', '.join(r.route) or '(none)'}" if r.route is not None else "")
        )
        table.add_row(
            literal(r.path), r.status, str(r.attempts or ""), _secs(r.duration), literal(detail)
        )
    out.print(table)
    if usage.model_calls:
        out.print(literal(f"model usage: {usage.summary()}"))
    print_json(result.state)


async def _logged_status(store: Any, run_id: str) -> tuple[object, frozenset[WorkflowStatus]]:
    """The run row's status as stored and the statuses its log allows, from one consistent
    read (so that a run moving on meanwhile cannot make them disagree)."""
    from cadenza.ids import RunId
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
    out.print(Text.assemble("run ", literal(result.run_id), " ", _status(result.status)))


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
    out.print(Text.assemble("run ", literal(run_id), " ", _status(WorkflowStatus.PAUSED)))


@runs_app.command("unpause")
def runs_unpause(
    run_id: Annotated[str, typer.Argument(help="A PAUSED run.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    actor: Annotated[str | None, typer.Option("--as", help="Who asks (for allowed_users).")] = None,
) -> None:
    """Let a paused run go on, here, until it finishes."""

    _act(db, lambda engine: engine.unpause(run_id, actor=actor), as_json)
