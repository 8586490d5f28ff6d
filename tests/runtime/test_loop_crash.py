"""A long loop killed mid-way (SIGKILL, real processes) resumes through the CLI at the right
iteration: finished iterations are not run again, the step in flight runs again with the same
idempotency key, and the log holds each iteration once. 300 iterations: the run stores
snapshots (every 200 events) of the folded progress, and resumes from them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.processes import child_env, only_run
from tests.runtime.loopy import expected_state

from cadenza import WorkflowStatus
from cadenza.core.events import Event

LOOPY = Path(__file__).parent / "loopy.py"
ITERATIONS = 300
KEYS = {f"lp#{k}/{name}" for k in range(1, ITERATIONS + 1) for name in ("work", "tally")}


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env("LOOPY_", tmp_path / "effects.txt", LOOPY_ITERATIONS=str(ITERATIONS), **extra)


def start(tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(LOOPY), str(tmp_path / "runs.db")],
        env=env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cadenza.cli", *args, "--db", str(tmp_path / "runs.db")],
        env=env(tmp_path),
        capture_output=True,
        timeout=120,
    )


def show(tmp_path: Path) -> dict[str, Any]:
    _, events = only_run(tmp_path / "runs.db")
    shown = cli(tmp_path, "runs", "show", events[0].run_id, "--json")
    assert shown.returncode == 0, shown.stderr.decode()
    return dict(json.loads(shown.stdout))


def effects(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "effects.txt"
    lines = path.read_text().split() if path.exists() else []
    return Counter(line.split(":", 1)[1] for line in lines)


def finished_iterations(events: list[Event]) -> int:
    return sum(e.type == "loop_iteration" for e in events)


def resume_to_the_end(tmp_path: Path) -> list[Event]:
    resumed = cli(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    status, events = only_run(tmp_path / "runs.db")
    assert status is WorkflowStatus.COMPLETED
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap-free log"
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values()), "no completion recorded twice"
    turns = [e.path for e in events if e.type == "loop_iteration"]
    assert turns == [f"lp#{k}" for k in range(1, ITERATIONS + 1)], "each iteration once"
    shown = show(tmp_path)
    assert shown["state"] == expected_state(ITERATIONS)
    assert len(shown["timeline"]) == 3 * ITERATIONS + 2  # work, tally, decision; lp, finish
    return events


def test_killed_inside_an_iteration_resumes_in_that_iteration(tmp_path: Path) -> None:
    first = start(tmp_path, LOOPY_KILL_IN="lp#250/tally")
    first.wait(timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()  # type: ignore[union-attr]
    status, events = only_run(tmp_path / "runs.db")
    assert status is WorkflowStatus.RUNNING and finished_iterations(events) == 249
    assert events[-1].path == "lp#250/work", "work was committed, tally was in flight"
    # What a reader sees of the stopped run comes from its folded snapshot and the log after.
    assert show(tmp_path)["state"] == {"n": 249, "total": sum(range(250))}
    resume_to_the_end(tmp_path)
    seen = effects(tmp_path)
    assert seen["lp#250/tally"] == 2, "the step in flight ran again, with the same key"
    assert all(n == 1 for key, n in seen.items() if key != "lp#250/tally")
    assert set(seen) == KEYS | {"finish"}


def test_killed_right_after_an_iteration_was_stored_repeats_nothing(tmp_path: Path) -> None:
    first = start(tmp_path, LOOPY_KILL_AFTER="lp#250@loop_iteration")
    first.wait(timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()  # type: ignore[union-attr]
    _, events = only_run(tmp_path / "runs.db")
    assert finished_iterations(events) == 250
    resume_to_the_end(tmp_path)
    seen = effects(tmp_path)
    assert all(n == 1 for n in seen.values()) and set(seen) == KEYS | {"finish"}


def test_killed_from_outside_anywhere_after_a_point_resumes(tmp_path: Path) -> None:
    """The child says when it reaches iteration 220 and goes on; it is killed when the line
    is read, wherever it has got to by then."""
    first = start(tmp_path, LOOPY_ANNOUNCE="lp#220/work")
    assert first.stdout is not None
    line = first.stdout.readline().decode()
    assert line.strip() == "reached lp#220/work", first.stderr.read().decode()  # type: ignore[union-attr]
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=120)
    status, events = only_run(tmp_path / "runs.db")
    if status is WorkflowStatus.COMPLETED:  # it finished before the kill landed
        return
    stopped_at = finished_iterations(events)
    assert stopped_at >= 219
    resume_to_the_end(tmp_path)
    seen = effects(tmp_path)
    assert set(seen) == KEYS | {"finish"}
    repeated = [key for key, n in seen.items() if n > 1]
    # At most the step in flight ran twice: one of the iteration the kill stopped.
    assert len(repeated) <= 1 and all(n <= 2 for n in seen.values())
    assert all(key.startswith(f"lp#{stopped_at + 1}/") for key in repeated), repeated
