"""Durability with real processes: a run is SIGKILLed at chosen and random points and resumed
by another process through the CLI. Nothing committed is lost or repeated; the step that was
in flight runs again with the same idempotency key."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.processes import child_env, event_count, only_run, wait_for_a_run, wait_for_progress

from cadenza import WorkflowStatus
from cadenza.core.events import Event

HERE = Path(__file__).parent
CRASHY = HERE / "crashy.py"
EXPECTED_LOG = ["a", "b1", "b2", "b3", "count0", "count1", "count2", "d"]


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env("CRASHY_", tmp_path / "effects.txt", **extra)


def start_run(tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CRASHY), str(tmp_path / "runs.db")],
        env=env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def resume(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "resume", "--db", str(tmp_path / "runs.db")],
        env=env(tmp_path, **extra),
        capture_output=True,
        timeout=60,
    )


def read_log(tmp_path: Path) -> tuple[WorkflowStatus, list[Event]]:
    return only_run(tmp_path / "runs.db")


def effects(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "effects.txt"
    lines = path.read_text().split() if path.exists() else []
    return Counter(line.split(":", 1)[1] for line in lines)


def check_log_invariants(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap-free log"
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values()), f"a completion recorded twice: {completed}"
    assert sum(e.type == "timer_set" for e in events) == 1


def final_state_log(tmp_path: Path) -> list[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "runs",
            "list",
            "--db",
            str(tmp_path / "runs.db"),
            "--json",
        ],
        env=env(tmp_path),
        capture_output=True,
        timeout=60,
        check=True,
    )
    import json

    (run,) = json.loads(out.stdout)
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "runs",
            "show",
            run["run_id"],
            "--db",
            str(tmp_path / "runs.db"),
            "--json",
        ],
        env=env(tmp_path),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(shown.stdout)["state"]["log"]


def crash_then_resume(tmp_path: Path, **kill: str) -> list[Event]:
    first = start_run(tmp_path, **kill)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()
    status, _ = read_log(tmp_path)
    assert status is WorkflowStatus.RUNNING
    second = resume(tmp_path, **{k: v for k, v in kill.items() if not k.startswith("CRASHY_KILL")})
    assert second.returncode == 0, second.stderr.decode()
    status, events = read_log(tmp_path)
    assert status is WorkflowStatus.COMPLETED
    check_log_invariants(events)
    assert final_state_log(tmp_path) == EXPECTED_LOG
    return events


def test_killed_inside_a_step_reruns_only_that_step_with_the_same_key(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, CRASHY_KILL_IN="a")
    seen = effects(tmp_path)
    assert seen["a"] == 2, "the in-flight step ran again, with the same idempotency key"
    assert all(n == 1 for k, n in seen.items() if k != "a")


def test_killed_after_a_commit_repeats_nothing(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, CRASHY_KILL_AFTER="fan[1]/b2")
    assert all(n == 1 for n in effects(tmp_path).values()), effects(tmp_path)


def test_killed_in_one_parallel_branch_keeps_the_other_branch(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, CRASHY_KILL_IN="fan[1]/b3")
    seen = effects(tmp_path)
    assert seen["fan[1]/b3"] == 2
    assert seen["fan[0]/b1"] == 1 and seen["fan[1]/b2"] == 1


def test_killed_in_a_loop_iteration_resumes_that_iteration(tmp_path: Path) -> None:
    crash_then_resume(tmp_path, CRASHY_KILL_IN="again#2/count")
    seen = effects(tmp_path)
    assert seen["again#2/count"] == 2
    assert seen["again#1/count"] == 1 and seen["again#3/count"] == 1


def test_killed_during_a_wait_resumes_the_remaining_time(tmp_path: Path) -> None:
    events = crash_then_resume(tmp_path, CRASHY_KILL_AFTER="pause@timer_set", CRASHY_WAIT="1.0")
    timer = next(e for e in events if e.type == "timer_set")
    done = next(e for e in events if e.type == "step_completed" and e.path == "pause")
    assert done.ts >= timer.data["fire_at"], "the timer fired no earlier than set"
    assert done.ts - timer.data["fire_at"] < 5, "and the resumed run did not restart it"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kills_until_done(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    slow = {"CRASHY_DELAY": "0.05", "CRASHY_WAIT": "0.2"}
    proc = start_run(tmp_path, **slow)
    wait_for_a_run(tmp_path / "runs.db")
    time.sleep(rng.uniform(0.0, 0.5))  # somewhere in the run
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    for _ in range(20):
        status, _ = read_log(tmp_path)
        if status is WorkflowStatus.COMPLETED:
            break
        before = event_count(tmp_path / "runs.db")
        resumer = subprocess.Popen(
            [sys.executable, "-m", "cadenza.cli", "resume", "--db", str(tmp_path / "runs.db")],
            env=env(tmp_path, **slow),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill it somewhere in its work: counted from its first event, not from its start,
        # which takes seconds on a loaded machine.
        if wait_for_progress(tmp_path / "runs.db", before, resumer):
            try:
                resumer.wait(timeout=rng.uniform(0.0, 0.7))
            except subprocess.TimeoutExpired:
                resumer.send_signal(signal.SIGKILL)
        resumer.wait(timeout=60)
    status, events = read_log(tmp_path)
    assert status is WorkflowStatus.COMPLETED
    check_log_invariants(events)
    completed = {e.path for e in events if e.type == "step_completed"}
    seen = effects(tmp_path)
    assert set(seen) <= completed | {"again#1/count", "again#2/count", "again#3/count"}
    for key in seen:
        assert key in completed, f"{key} had an effect but never completed"
