"""`cadenza worker` with real processes: it continues a run whose process was killed, and an
approval whose time ran out, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import child_env, only_run

from cadenza import WorkflowStatus

HERE = Path(__file__).parent

TIMED_APPROVAL = """
from cadenza import Workflow

workflow = Workflow("timed_approval")

@workflow.step
def prepare(state):
    return {"prepared": True}

workflow.approval("review", approvers=["compliance_officer"], timeout=0.5, on_timeout="approve")

@workflow.step
def finish(state):
    return {"finished": True}
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cadenza.cli", *args], env=env, capture_output=True, timeout=60
    )


def test_worker_once_continues_a_killed_run(tmp_path: Path) -> None:
    env = child_env("CRASHY_", tmp_path / "effects.txt", CRASHY_KILL_IN="a")
    db = tmp_path / "runs.db"
    first = subprocess.run(
        [sys.executable, str(HERE / "crashy.py"), str(db)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert first.returncode == -signal.SIGKILL
    done = cli("worker", "--once", "--db", str(db), env=child_env("CRASHY_", tmp_path / "e2"))
    assert done.returncode == 0, done.stderr.decode()
    status, _ = only_run(db)
    assert status is WorkflowStatus.COMPLETED


def test_worker_applies_an_approval_timeout_and_stops_on_sigterm(tmp_path: Path) -> None:
    module = tmp_path / "timed.py"
    module.write_text(TIMED_APPROVAL)
    db = tmp_path / "runs.db"
    env = child_env("NOTHING_", tmp_path / "unused")
    started = cli("run", str(module), "--db", str(db), "-q", env=env)
    assert started.returncode == 0 and b"WAITING_APPROVAL" in started.stdout
    worker = subprocess.Popen(
        [sys.executable, "-m", "cadenza.cli", "worker", "--db", str(db), "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, events = only_run(db)
            if status is WorkflowStatus.COMPLETED:
                break
            time.sleep(0.1)
        assert status is WorkflowStatus.COMPLETED
        decision = next(e for e in events if e.type == "approval_decision")
        assert decision.data["actor"] == "system:timeout" and decision.data["approve"] is True
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, worker.stderr.read().decode() if worker.stderr else ""
