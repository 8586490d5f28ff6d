"""A REACT loop in a real process on SQLite, killed with SIGKILL in the middle and resumed by
another process through the CLI: recorded model calls and tool calls are not repeated; the
tool call that was in flight runs again with the same idempotency key."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from cadenza import WorkflowStatus
from cadenza.core.events import Event
from tests.processes import child_env, only_run

SCRIPT = Path(__file__).parent / "reactcrash.py"


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return child_env("REACTCRASH_", tmp_path / "effects.txt", **extra)


def crash_then_resume(tmp_path: Path, **kill: str) -> tuple[str, list[Event], Counter[str]]:
    db = tmp_path / "runs.db"
    first = subprocess.run(
        [sys.executable, str(SCRIPT), str(db)],
        env=env(tmp_path, **kill),
        capture_output=True,
        timeout=120,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr.decode()
    status, events = only_run(db)
    assert status is WorkflowStatus.RUNNING
    run_id = events[0].run_id
    second = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "resume", "--db", str(db), "--json"],
        env=env(tmp_path),
        capture_output=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr.decode()
    status, events = only_run(db)
    assert status is WorkflowStatus.COMPLETED
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "a gap-free log"
    completed = Counter(e.path for e in events if e.type == "step_completed")
    assert all(n == 1 for n in completed.values()), f"a completion recorded twice: {completed}"
    answer = next(e for e in events if e.path == "agent" and e.type == "step_completed")
    assert answer.data["update"]["answer"] == "bought a and b (charged 5)"
    lines = (tmp_path / "effects.txt").read_text().split("\n")
    return run_id, events, Counter(line for line in lines if line)


def test_killed_inside_a_tool_call_reruns_only_that_call_with_the_same_key(
    tmp_path: Path,
) -> None:
    run_id, events, effects = crash_then_resume(tmp_path, REACTCRASH_KILL_IN="charge")
    tools = {k.split(":", 1)[1]: n for k, n in effects.items() if k.startswith(run_id)}
    fetches = {k: n for k, n in tools.items() if "/fetch:" in k}
    charges = {k: n for k, n in tools.items() if "/charge:" in k}
    assert len(fetches) == 2 and set(fetches.values()) == {1}, "finished calls not repeated"
    assert list(charges.items()) == [("agent#2/charge:call_4_0", 2)], (
        "the interrupted call ran again, with the same idempotency key"
    )
    models = {k: n for k, n in effects.items() if k.startswith("model ")}
    assert models == {"model 1": 1, "model 4": 1, "model 6": 1}, "no model call repeated"
    paths = [e.path for e in events if e.type == "step_completed"]
    assert paths[:3] == ["agent#1/model", *sorted(paths[1:3])]
    assert paths[3:] == ["agent#2/model", "agent#2/charge:call_4_0", "agent#3/model", "agent"]


def test_killed_after_a_recorded_model_call_repeats_nothing(tmp_path: Path) -> None:
    _, _, effects = crash_then_resume(tmp_path, REACTCRASH_KILL_AFTER="agent#2/model")
    assert all(n == 1 for n in effects.values()), effects
    assert len(effects) == 6, "three model calls and three tool calls, once each"
