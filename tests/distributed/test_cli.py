"""The command line against PostgreSQL: ``--store`` (or ``$CADENZA_STORE``) names the database,
``cadenza run --enqueue`` hands a run to the workers, ``cadenza worker`` executes what its
queues and workflows cover."""

from __future__ import annotations

import json
import subprocess
import sys

from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store.postgres import PostgresStore

from .conftest import FLOWS, Workers
from .helpers import effects
from .test_takeover import _finished


def cli(workers: Workers, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cadenza.cli", *args],
        env={**workers.env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_enqueue_then_a_worker_runs_it(
    dsn: str, workers: Workers, store: PostgresStore
) -> None:
    queued = cli(workers, "run", f"{FLOWS}:chaos", "--store", dsn, "--enqueue", "--json")
    assert queued.returncode == 0, queued.stderr
    run_id = RunId(json.loads(queued.stdout)["run_id"])
    elsewhere = cli(
        workers, "run", f"{FLOWS}:chaos", "--detach", "--queue", "elsewhere", CADENZA_STORE=dsn
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    other = RunId(elsewhere.stdout.strip())
    assert (await store.get_run(run_id)).status is WorkflowStatus.INITIALIZING

    listed = cli(workers, "runs", "list", "--json", CADENZA_STORE=dsn)
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {run_id, other}

    done = cli(
        workers, "worker", "--store", dsn, "--workflow", f"{FLOWS}:chaos", "--queue", "default",
        "--once", "--log-level", "WARNING",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (await _finished(store, run_id)).status is WorkflowStatus.COMPLETED
    assert (await store.get_run(other)).status is WorkflowStatus.INITIALIZING  # not its queue
    assert len(effects(dsn)) == 5

    shown = cli(workers, "runs", "show", run_id, "--db", dsn, "--json")  # --db: the old name
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "COMPLETED"


async def test_a_worker_given_a_bad_workflow_says_which(workers: Workers, dsn: str) -> None:
    bad = cli(workers, "worker", "--store", dsn, "--workflow", f"{FLOWS}:nothing", "--once")
    assert bad.returncode == 2
    assert "--workflow" in bad.stderr and "nothing" in bad.stderr
