"""People in the loop: approvals to list and decide, and signals."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cadenza.cli._app import (
    ActorOption,
    CommentOption,
    DbOption,
    _act,
    _engine,
    _run,
    _when,
    app,
    approvals_app,
    fail,
    literal,
    out,
    print_json,
)


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
        print_json(pending)
        return
    table = Table("step", "approvers", "approved by", "since", "summary")
    table.add_column("run", no_wrap=True, min_width=32)
    for p in pending:
        table.add_row(
            literal(p["step"]),
            literal(", ".join(p["approvers"])),
            literal(", ".join(p["approved_by"])),
            _when(p["since"]),
            literal(p.get("summary") or ""),
            literal(p["run_id"]),
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
