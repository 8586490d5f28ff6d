"""SIGKILL in the middle of a retry backoff and in the middle of a rollback; another process
resumes through the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.processes import child_env, only_run

from cadenza import WorkflowStatus
from cadenza.core.events import Event

HERE = Path(__file__).parent


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env("SAGA_", tmp_path / "effects.txt", **extra)


def crash_and_resume(tmp_path: Path, mode: str, **kill: str) -> tuple[WorkflowStatus, list[Event]]:
    db = str(tmp_path / "runs.db")
    first = subprocess.run(
        [sys.executable, str(HERE / "sagacrash.py"), db, mode],
        env=env(tmp_path, **kill),
        capture_output=True,
        timeout=60,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr.decode()
    second = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "resume", "--db", db],
        env=env(tmp_path),
        capture_output=True,
        timeout=60,
    )
    assert second.stderr.count(b"Traceback") == 0, second.stderr.decode()

    return only_run(db)


def effects(tmp_path: Path) -> Counter[str]:
    return Counter((tmp_path / "effects.txt").read_text().split())


def test_killed_during_a_backoff_resumes_the_wait_not_the_count(tmp_path: Path) -> None:
    status, events = crash_and_resume(tmp_path, "ok", SAGA_KILL_AFTER="step_failed@flaky")
    assert status is WorkflowStatus.COMPLETED
    failures = [e for e in events if e.type == "step_failed"]
    assert [e.attempt for e in failures] == [1, 2], "the count went on from where it was"
    done = next(e for e in events if e.type == "step_completed" and e.path == "flaky")
    assert done.attempt == 3
    assert done.data["started_at"] >= failures[-1].data["retry_at"]
    second_try = failures[1].data["started_at"]
    assert second_try >= failures[0].data["retry_at"], "the resumed run waited out the backoff"
    assert effects(tmp_path) == Counter({"reserve": 1, "charge": 1, "flaky": 3, "ship": 1})


def test_killed_during_a_rollback_resumes_the_rollback(tmp_path: Path) -> None:
    status, events = crash_and_resume(tmp_path, "fail", SAGA_KILL_IN="charge!compensate")
    assert status is WorkflowStatus.FAILED
    seen = effects(tmp_path)
    assert seen["charge!compensate"] == 2, "the compensation in flight ran again, same key"
    assert seen["reserve!compensate"] == 1
    done = [e.path for e in events if e.type == "compensation_completed"]
    assert done == ["charge!compensate", "reserve!compensate"]
    statuses = [e.data["to"] for e in events if e.type == "status"]
    assert statuses == ["RUNNING", "ROLLBACK", "FAILED"]
    final = [e for e in events if e.type == "status"][-1]
    assert "compensated charge, reserve" in final.data["reason"]
