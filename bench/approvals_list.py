"""Listing the approvals one user may decide among many pending: N runs wait at a
HUMAN_APPROVAL step (``--for-role`` of them, spread evenly in time, for the role ``auditor``,
the rest for ``officer``), then

- ``engine.pending_approvals(for_user="ann")`` (ann is an auditor): the role's requests;
- ``engine.pending_approvals(for_user="olivia", limit=50)`` (an officer): the oldest page of a
  role that nearly every request names;
- ``engine.pending_approvals(limit=50)``: the oldest page of all;
- ``cadenza approvals list --for ann --json`` as a whole process (interpreter start-up
  included), and the same command on an empty database (start-up and opening alone);

each best of ``--repeat`` (the engine calls on an engine opened once, after one untimed call).
``--baseline`` also times what the listing did before the table existed: fold the log of
every waiting run (slow: seconds at 100,000). On PostgreSQL the tables are analysed after
filling them, as autovacuum would be a minute later.

    python bench/approvals_list.py [--runs 100000] [--for-role 50] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from cadenza import Directory, Engine, SQLiteStore, Workflow, WorkflowStatus
from cadenza.runtime.progress import Progress
from cadenza.steps.approval import decided
from cadenza.store.base import Store

PEOPLE = {"ann": ["auditor"], "olivia": ["officer"]}
BATCH = 2_000  # runs started at once while filling the store


def prepare(state: dict[str, Any]) -> dict[str, Any]:
    return {"prepared": True}


def review(role: str) -> Workflow:
    wf = Workflow(f"review_by_{role}")
    wf.task(prepare, inline=True)
    wf.approval("review", approvers=[role], show=["amount"], summary="check the amount")
    return wf


def open_store(kind: str, where: str, *, fast: bool = False) -> Store:
    if kind == "postgres":
        from cadenza.store.postgres import PostgresStore

        dsn, _, schema = where.partition("#")
        return PostgresStore(dsn, schema=schema)
    return SQLiteStore(where, fast=fast)


async def fill(store: Store, runs: int, for_role: int) -> float:
    """Start ``runs`` runs that wait for an approval; returns the seconds it took."""
    officers, auditors = review("officer"), review("auditor")
    every = max(runs // max(for_role, 1), 1)
    started = time.perf_counter()
    async with Engine(store) as engine:
        for first in range(0, runs, BATCH):
            batch = range(first, min(first + BATCH, runs))
            results = await asyncio.gather(
                *(
                    engine.run(auditors if i % every == every // 2 else officers, {"amount": i})
                    for i in batch
                )
            )
            assert all(r.status is WorkflowStatus.WAITING_APPROVAL for r in results)
    return time.perf_counter() - started


async def best(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    result = await call()  # untimed: the first call warms the caches
    fastest = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


async def folded(engine: Engine) -> int:
    """The listing as it was before the table: every waiting run's log folded."""
    count = 0
    for record in await engine.store.list_runs(
        status=[WorkflowStatus.WAITING_APPROVAL], limit=10**9
    ):
        progress = Progress(reducers={}).apply_all(await engine.store.read_events(record.run_id))
        count += sum(decided(r) is None for r in progress.approvals.values())
    return count


async def engine_figures(
    store: Store, runs: int, for_role: int, repeat: int, baseline: bool
) -> dict[str, float]:
    people = Directory({user: frozenset(roles) for user, roles in PEOPLE.items()})
    out: dict[str, float] = {}
    async with Engine(store, directory=people) as engine:
        seconds, mine = await best(lambda: engine.pending_approvals(for_user="ann"), repeat)
        assert len(mine) == for_role and all(p["approvers"] == ["auditor"] for p in mine)
        out["for_role_ms"] = seconds * 1000
        seconds, page = await best(
            lambda: engine.pending_approvals(for_user="olivia", limit=50), repeat
        )
        assert len(page) == 50
        out["busy_role_page_ms"] = seconds * 1000
        seconds, page = await best(lambda: engine.pending_approvals(limit=50), repeat)
        assert len(page) == 50
        out["oldest_page_ms"] = seconds * 1000
        if baseline:
            seconds, count = await best(lambda: folded(engine), 1)
            assert count == runs
            out["fold_every_log_ms"] = seconds * 1000
    return out


def cli_seconds(db: str, config: Path, repeat: int, expect: int) -> float:
    """Best wall time of ``cadenza approvals list --for ann --json`` as a new process."""
    env = {**os.environ, "CADENZA_CONFIG": str(config)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-m", "cadenza.cli", "approvals", "list", "--for", "ann"]
    command += ["--json", "--db", db]
    fastest = float("inf")
    for _ in range(repeat + 1):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"cadenza approvals list failed: {done.stderr.strip()}")
        assert len(json.loads(done.stdout)) == expect
        fastest = min(fastest, elapsed)
    return fastest


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cadenza.toml"
        config.write_text(
            "[users]\n" + "".join(f"{u} = {json.dumps(r)}\n" for u, r in PEOPLE.items())
        )
        if args.store == "postgres":
            dsn = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"
            schema = f"bench_approvals_{os.getpid()}"
            where, empty = f"{dsn}#{schema}", f"{dsn}#{schema}_empty"
            db_url = f"{dsn}?options=-csearch_path%3D{schema}"
            empty_url = f"{dsn}?options=-csearch_path%3D{schema}_empty"
        else:
            where, empty = str(Path(tmp) / "approvals.db"), str(Path(tmp) / "empty.db")
            db_url, empty_url = where, empty
        try:
            filled = await fill(open_store(args.store, where, fast=True), args.runs, args.for_role)
            if args.store == "postgres":
                await analyze(dsn, schema)
            figures = await engine_figures(
                open_store(args.store, where), args.runs, args.for_role, args.repeat, args.baseline
            )
            figures["fill_s"] = filled
            figures["cli_s"] = cli_seconds(db_url, config, args.repeat, args.for_role)
            async with open_store(args.store, empty):
                pass  # created, with the schema
            figures["cli_empty_s"] = cli_seconds(empty_url, config, args.repeat, 0)
        finally:
            if args.store == "postgres":
                await drop_schema(dsn, schema)
    figures = {k: round(v, 4) for k, v in figures.items()}
    if args.json:
        print(json.dumps({"scenario": "approvals_list", "store": args.store, "runs": args.runs,
                          "for_role": args.for_role, **figures}))  # fmt: skip
        return
    print(f"{args.runs} pending approvals ({args.store}), {args.for_role} for the role auditor")
    print(f"  filled in {figures['fill_s']:.1f} s")
    print(f"  engine: the role's {args.for_role}        {figures['for_role_ms']:8.2f} ms")
    print(f"  engine: oldest 50 of officer's   {figures['busy_role_page_ms']:8.2f} ms")
    print(f"  engine: oldest 50 of all         {figures['oldest_page_ms']:8.2f} ms")
    if "fold_every_log_ms" in figures:
        print(f"  before: fold every waiting log   {figures['fold_every_log_ms']:8.1f} ms")
    print(f"  cadenza approvals list --for ann {figures['cli_s'] * 1000:8.0f} ms (whole process)")
    print(f"  the same on an empty database    {figures['cli_empty_s'] * 1000:8.0f} ms")


async def analyze(dsn: str, schema: str) -> None:
    """Statistics for the planner, as autovacuum gathers them after a bulk of inserts (a
    minute or so later): without them it may read every request of a role and sort them."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        await conn.execute("ANALYZE")


async def drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for name in (schema, f"{schema}_empty"):
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--for-role", type=int, default=50)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main(parser.parse_args()))
