"""The audit trail: verify the hash chains, export a run's record."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cadenza.cli._app import (
    DbOption,
    _engine,
    _run,
    audit_app,
    err,
    fail,
    out,
)


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
