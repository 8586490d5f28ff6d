"""``cadenza serve`` as a real process: keys made with ``cadenza keys``, the server found ready
by the line it prints, runs started and followed over HTTP, SIGTERM a clean stop. On SQLite
the server executes its runs; on PostgreSQL it only enqueues, and two ``cadenza worker``
processes execute them (approvals and signals included)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

FLOWS = Path(__file__).parent / "flows.py"
ROOT = Path(__file__).parents[2]
PATIENCE = 60.0
CONFIG = """
[users]
ops = ["operator"]
olivia = ["compliance_officer"]

[server.identities]
"key:ci" = "ops"
"key:olivia" = "olivia"
"""


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []
        (tmp / "cadenza.toml").write_text(CONFIG)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
        self.env["CADENZA_CONFIG"] = str(tmp / "cadenza.toml")
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])

    def cadenza(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cadenza.cli", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )

    def key(self, store: str, name: str, *roles: str) -> str:
        args = [arg for role in roles for arg in ("--role", role)]
        done = self.cadenza("keys", "create", "--name", name, *args, "--store", store)
        assert done.returncode == 0, done.stderr
        assert f"key:{name}" in done.stderr
        return done.stdout.strip()

    def start(self, *args: str, ready: str) -> tuple[subprocess.Popen[bytes], str]:
        """Start ``cadenza ARGS`` and wait for the line matching ``ready`` in its output."""
        log = self.tmp / f"process-{len(self.running)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "cadenza.cli", *args],
                env=self.env,
                cwd=self.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.running.append((process, log))
        deadline = time.monotonic() + PATIENCE
        while True:
            found = re.search(ready, log.read_text(errors="replace"))
            if found:
                return process, found.group(0)
            assert process.poll() is None, f"{args} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{args} never got ready:\n{log.read_text()}"
            time.sleep(0.02)

    def stop(self, process: subprocess.Popen[bytes]) -> str:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=PATIENCE)
        log = next(path for p, path in self.running if p is process)
        return log.read_text(errors="replace")

    def stop_all(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def settled(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    wanted = statuses or ("COMPLETED", "FAILED", "CANCELLED")

    def check() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        return run if run["status"] in wanted else None

    result: dict[str, Any] = until(check, f"run {run_id} to be {wanted}")
    return result


def workflow(name: str) -> str:
    return f"{FLOWS}:{name}"


def test_serve_on_sqlite_executes_runs(processes: Processes) -> None:
    store = str(processes.tmp / "served.db")
    key = processes.key(store, "ci", "operator")
    server, line = processes.start(
        "serve", "--store", store, "--port", "0", "--workflow", workflow("orders"),
        "--workflow", workflow("waiter"),
        ready=r"listening on http://127\.0\.0\.1:\d+",
    )  # fmt: skip
    url = line.removeprefix("listening on ")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert httpx.get(f"{url}/v1/runs").status_code == 401
        started = client.post("/v1/workflows/orders/runs", json={"input": {"amount": 2}})
        assert started.status_code == 201, started.text
        run = settled(client, started.json()["run_id"])
        assert run["state"]["done"] is True
        waiting = client.post("/v1/workflows/waiter/runs", json={}).json()["run_id"]
        events: list[dict[str, Any]] = []
        with client.stream("GET", f"/v1/runs/{waiting}/stream") as stream:
            for raw in stream.iter_lines():
                if raw.startswith("data: "):
                    events.append(json.loads(raw.removeprefix("data: ")))
                    if len(events) == 2:
                        client.post(f"/v1/runs/{waiting}/signals", json={"name": "go"})
                if raw == "event: end":
                    break
        assert events[-1]["data"]["to"] == "COMPLETED"
    listed = processes.cadenza("keys", "list", "--json", "--store", store)
    (record,) = json.loads(listed.stdout)
    assert record["identity"] == "key:ci" and record["last_used"] is not None
    output = processes.stop(server)
    assert server.returncode == 0, output
    assert "cadenza serve: stopped" in output


def test_serve_on_postgresql_enqueues_for_two_workers(processes: Processes, pg_url: str) -> None:
    key = processes.key(pg_url, "ci", "operator")
    approver = processes.key(pg_url, "olivia")
    targets = [arg for name in ("orders", "gated", "waiter") for arg in ("-w", workflow(name))]
    workers = [
        processes.start("worker", "--store", pg_url, *targets, "--lease", "5",
                        ready="worker_started")[0]
        for _ in range(2)
    ]  # fmt: skip
    server, line = processes.start(
        "serve", "--store", pg_url, "--port", "0", *targets,
        ready=r"listening on http://127\.0\.0\.1:\d+",
    )  # fmt: skip
    assert "enqueuing runs for workers" in processes.running[-1][1].read_text()
    url = line.removeprefix("listening on ")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        runs = []
        for amount in range(20):
            answer = client.post("/v1/workflows/orders/runs", json={"input": {"amount": amount}})
            assert answer.status_code == 201 and answer.json()["status"] == "INITIALIZING"
            runs.append(answer.json()["run_id"])
        for run_id in runs:
            assert settled(client, run_id)["state"]["done"] is True
        gated = client.post("/v1/workflows/gated/runs", json={}).json()["run_id"]
        settled(client, gated, "WAITING_APPROVAL")
        decided = client.post(
            f"/v1/runs/{gated}/approvals/review",
            json={"approve": True},
            headers={"Authorization": f"Bearer {approver}"},
        )
        assert decided.status_code == 200, decided.text
        assert settled(client, gated)["status"] == "COMPLETED"
        waiting = client.post("/v1/workflows/waiter/runs", json={}).json()["run_id"]
        until(
            lambda: any(
                e["type"] == "status" and e["data"]["to"] == "RUNNING"
                for e in client.get(f"/v1/runs/{waiting}/events").json()["events"]
            ),
            "a worker to take the waiter",
        )
        assert client.post(f"/v1/runs/{waiting}/signals", json={"name": "go"}).status_code == 200
        assert settled(client, waiting)["state"]["done"] is True
    output = processes.stop(server)
    assert server.returncode == 0, output
    logs = "".join(processes.stop(w) for w in workers)
    # the workers executed every run (each logs the events of the runs it executes), the
    # decided and the signalled ones included
    for run_id in [*runs, gated, waiting]:
        assert run_id in logs, run_id
