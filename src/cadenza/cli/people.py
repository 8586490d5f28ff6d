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
    JsonOption,
    _act,
    _run,
    _when,
    app,
    fail,
    literal,
    opened_store,
    out,
    print_json,
)

approvals_app = typer.Typer(help="Approvals waiting for a decision.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")

RunArgument = Annotated[str, typer.Argument(help="The waiting run (id or a unique start of one).")]


@approvals_app.command("list")
def approvals_list(
    db: DbOption = None,
    for_user: Annotated[
        str | None, typer.Option("--for", help="Only those this user may decide.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, oldest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List approvals waiting for a decision, oldest first: run, step, approvers, since when.

    Read from the store's table of pending approvals, without an engine (what
    ``Engine.pending_approvals`` lists, by the same rule: ``--for`` names a configured user,
    who may decide by name or by role)."""

    async def main() -> list[dict[str, Any]]:
        names = None
        if for_user:
            from cadenza.identity import Directory

            names = Directory.load().names(for_user)
            if not names:
                return []
        async with opened_store(db) as store:
            page = await store.pending_approvals(approvers=names, limit=limit)
        return [p.as_dict() for p in page]

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
    if len(pending) == limit:
        out.print(f"(the oldest {limit}; --limit to see more)")


def _decide(
    run_id: str,
    step: str,
    actor: str,
    approve: bool,
    comment: str,
    db: str | None,
    as_json: bool,
) -> None:
    _act(
        db,
        run_id,
        lambda engine, rid: engine.decide(rid, step, actor=actor, approve=approve, comment=comment),
        as_json,
    )


@app.command()
def approve(
    run_id: RunArgument,
    step: Annotated[str, typer.Argument(help="The approval step.")],
    actor: ActorOption,
    comment: CommentOption = "",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a waiting step; with its quorum reached the run goes on here."""
    _decide(run_id, step, actor, True, comment, db, as_json)


@app.command()
def reject(
    run_id: RunArgument,
    step: Annotated[str, typer.Argument(help="The approval step.")],
    actor: ActorOption,
    comment: CommentOption = "",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a waiting step: the run fails (after compensating what it declared)."""
    _decide(run_id, step, actor, False, comment, db, as_json)


@app.command()
def signal(
    run_id: Annotated[str, typer.Argument(help="The run (id or a unique start of one).")],
    name: Annotated[str, typer.Argument(help="The signal's name.")],
    payload: Annotated[str, typer.Option("--payload", help="JSON value.")] = "null",
    actor: Annotated[str, typer.Option("--as", help="Who sends it.")] = "",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver a named external event to a run."""
    try:
        value = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"invalid JSON in --payload: {exc.msg} at line {exc.lineno} column {exc.colno}")

    _act(db, run_id, lambda engine, rid: engine.signal(rid, name, value, actor=actor), as_json)
