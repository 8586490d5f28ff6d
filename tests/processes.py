"""Helpers for tests that run Cadenza in real child processes (and kill them)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from cadenza import SQLiteStore, WorkflowStatus
from cadenza.core.events import Event

SRC = Path(__file__).parents[1] / "src"


def child_env(prefix: str, effects: Path, **extra: str) -> dict[str, str]:
    """This environment, without variables starting with ``prefix`` (a test's knobs), with
    ``{prefix}EFFECTS`` set, the source tree importable, and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    env[f"{prefix}EFFECTS"] = str(effects)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def only_run(db: Path | str) -> tuple[WorkflowStatus, list[Event]]:
    """The status and log of the one run in a SQLite file."""

    async def read() -> tuple[WorkflowStatus, list[Event]]:
        store = SQLiteStore(db)
        await store.open()
        try:
            (run,) = await store.list_runs()
            return run.status, await store.read_events(run.run_id)
        finally:
            await store.close()

    return asyncio.run(read())


def wait_for_a_run(db: Path, timeout: float = 60.0) -> None:
    """Block until the child process has stored its run (interpreter start-up varies)."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT count(*) FROM runs").fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass  # the schema is still being created
        time.sleep(0.01)
    raise TimeoutError(f"no run appeared in {db} within {timeout}s")


def event_count(db: Path) -> int:
    """How many events the SQLite file holds (0 while it is being created)."""
    import sqlite3

    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_for_progress(
    db: Path, past: int, proc: subprocess.Popen[bytes], timeout: float = 120.0
) -> bool:
    """Block until the log in ``db`` holds more than ``past`` events, the sign that the child
    got past its start-up (which takes seconds on a loaded machine) and is executing; False
    if the child exited first."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if event_count(db) > past:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError(f"the child made no progress in {db} within {timeout}s")
