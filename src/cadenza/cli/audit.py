"""The audit trail: verify what the store holds, anchor each run's chain head outside it, export
a run's record.

``verify`` and ``anchor`` read the rows as stored (:meth:`Store.read_stored`), never the
decoded events: a row someone edited into something no store writes is reported as tampering
with the others, instead of stopping the check with a traceback."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from cadenza.cli._app import (
    DbOption,
    HandlersOption,
    _run,
    app,
    err,
    fail,
    literal,
    opened_store,
    out,
    print_json,
    resolve,
)
from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId

if TYPE_CHECKING:
    from cadenza.core.state import Reducer
    from cadenza.observe.audit_verify import RunCheck
    from cadenza.store.base import Store

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

OneRunArgument = Annotated[
    str | None, typer.Argument(help="One run (id or a unique start of one); default: every run.")
]

AnchorOption = Annotated[
    Path | None,
    typer.Option(
        "--anchor",
        help="Anchors written earlier by `cadenza audit anchor`: each anchored run's log must "
        "still hold that event with that hash (catches a cut or recomputed tail).",
        show_default=False,
    ),
]

WorkflowsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--workflow",
        help="A workflow definition (module:attribute or file; repeatable) whose reducers the "
        "snapshots of its runs are folded with; without it, state values merged by a reducer "
        "are not compared.",
        show_default=False,
    ),
]


@audit_app.command("verify")
def audit_verify(
    run_id: OneRunArgument = None,
    anchor: AnchorOption = None,
    workflows: WorkflowsOption = None,
    handlers: HandlersOption = None,
    db: DbOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"ok", "runs", "broken": [{"run_id", "seq", "reason", "detail"}], '
            '"anchors_held", "unchecked_values"} instead of lines.',
        ),
    ] = False,
) -> None:
    """Check each run as stored: its events and their hash chain, its status against its log,
    its snapshot against the fold of its log, and (--anchor) its chain head. Every broken run
    is named on stderr (exit 1); the others are still checked."""
    anchors = _read_anchors(anchor) if anchor is not None else None
    definitions = _load_definitions(workflows or [], handlers or [])
    checks = _checks(db, run_id, anchors, definitions)
    if as_json:
        _verify_json(checks, anchors)
        return
    broken = _report_broken(checks)
    if broken:
        summary = f"{broken} of {len(checks)} run(s) broken"
        err.print(Text.assemble(("broken:", "bold red"), f" {summary}"), soft_wrap=True)
        raise typer.Exit(1)
    summary = (
        f"ok: {len(checks)} run(s), every event chain verifies; run statuses and snapshots "
        "match their logs"
    )
    if anchors is not None:
        held = sum(1 for c in checks if c.run_id in anchors)
        summary += f"; {held} anchor(s) hold"
    out.print(summary, highlight=False, markup=False, soft_wrap=True)
    unchecked = [c for c in checks if c.unchecked]
    if unchecked:
        keys = sum(len(c.unchecked) for c in unchecked)
        err.print(
            f"note: {keys} state value(s) in the snapshots of {len(unchecked)} run(s) are merged "
            "by reducers and were not compared; pass --workflow to compare them",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@audit_app.command("anchor")
def audit_anchor(
    run_id: OneRunArgument = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to FILE (default: stdout).", show_default=False),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write each run's chain head (run id, last seq, last hash) as JSON lines, to keep where
    the database's writers cannot reach; `cadenza audit verify --anchor FILE` checks them.
    A run that does not verify is named on stderr and not anchored (exit 1)."""
    from cadenza.observe.anchors import anchor_lines

    checks = _checks(db, run_id, None, {})
    heads = [(c.run_id, *c.head) for c in checks if c.broken is None and c.head is not None]
    text = anchor_lines(heads)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    broken = _report_broken(checks)
    where = f" to {output}" if output is not None else ""
    err.print(literal(f"anchored {len(heads)} run(s){where}", one_line=True), soft_wrap=True)
    if broken:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    run_id: Annotated[str, typer.Argument(help="The run (id or a unique start of one).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or csv.")] = "jsonl",
    db: DbOption = None,
) -> None:
    """Write a run's compliance record: who, what, when and why, for every event."""
    from cadenza.observe.audit import export

    if fmt not in ("jsonl", "csv"):
        fail(f"--format must be jsonl or csv, got {fmt!r}")

    async def main() -> str:
        async with opened_store(db) as store:
            rid = await resolve(store, run_id)
            try:
                events = await store.read_events(rid)
            except (TypeError, ValueError) as exc:  # a row no store writes: it was edited
                fail(
                    f"run {rid}: a stored event cannot be read ({exc}); "
                    f"`cadenza audit verify {rid}` says which"
                )
            return export(events, fmt)  # type: ignore[arg-type]

    sys.stdout.write(_run(main))


def _checks(
    db: str | None,
    run_id: str | None,
    anchors: Mapping[RunId, tuple[int, str]] | None,
    definitions: Mapping[tuple[str, str], Mapping[str, Reducer]],
) -> list[RunCheck]:
    from cadenza.observe.audit_store import verify_store

    async def main() -> list[RunCheck]:
        async with opened_store(db) as store:
            ids = [await _audited_id(store, run_id)] if run_id is not None else None
            return await verify_store(store, ids, anchors=anchors, definitions=definitions)

    return _run(main)


async def _audited_id(store: Store, run_id: str) -> RunId:
    """The run ``run_id`` names; an id with no run row is checked as given, since what is
    stored under it (events, a snapshot: an orphan) is what the auditor asks about."""
    try:
        return await resolve(store, run_id)
    except RunNotFound:
        return RunId(run_id)


def _verify_json(checks: list[RunCheck], anchors: Mapping[RunId, tuple[int, str]] | None) -> None:
    """The outcome of ``verify --json``: one document on stdout, exit 1 when a run is broken."""
    broken = [c.broken for c in checks if c.broken is not None]
    print_json(
        {
            "ok": not broken,
            "runs": len(checks),
            "broken": [
                {"run_id": b.run_id, "seq": b.seq, "reason": str(b.reason), "detail": b.detail}
                for b in broken
            ],
            "anchors_held": (
                None
                if anchors is None
                else sum(1 for c in checks if c.run_id in anchors and c.broken is None)
            ),
            "unchecked_values": sum(len(c.unchecked) for c in checks),
        }
    )
    if broken:
        raise typer.Exit(1)


def _report_broken(checks: list[RunCheck]) -> int:
    """One ``broken:`` line on stderr per broken run; returns how many."""
    broken = [c.broken for c in checks if c.broken is not None]
    for problem in broken:
        line = Text.assemble(("broken:", "bold red"), " ", literal(problem, one_line=True))
        err.print(line, soft_wrap=True)
    return len(broken)


def _read_anchors(path: Path) -> dict[RunId, tuple[int, str]]:
    """The anchors in ``path``; a file that cannot be read or holds something else than
    anchors is a one-line error naming FILE:LINE (exit 2)."""
    from cadenza.observe.anchors import AnchorError, parse_anchors

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text, so not an anchor file")
    try:
        return parse_anchors(text)
    except AnchorError as exc:
        fail(f"{path}:{exc.line}: {exc.message}")


def _load_definitions(
    targets: list[str], handlers: list[str]
) -> dict[tuple[str, str], Mapping[str, Reducer]]:
    """The reducers of each ``--workflow``, by the ``(name, version)`` its runs record. These
    are definitions the auditor names, never targets read from the store being audited."""
    if not targets:
        return {}
    from cadenza.core.errors import CadenzaError
    from cadenza.graph.builder import Workflow
    from cadenza.graph.ir import WorkflowIR
    from cadenza.runtime.loader import load_target

    definitions: dict[tuple[str, str], Mapping[str, Reducer]] = {}
    for target in targets:
        try:
            loaded, _ = load_target(target, handler_modules=handlers)
            ir = loaded.compile() if isinstance(loaded, Workflow) else loaded
        except CadenzaError as exc:
            fail(f"--workflow {target}: {exc}")
        if not isinstance(ir, WorkflowIR):
            fail(f"--workflow {target}: names a {type(ir).__name__}, not a workflow")
        definitions[(ir.name, ir.version)] = ir.schema.reducers
    return definitions
