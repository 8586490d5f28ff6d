"""Helpers for tests that run Cadenza in real child processes (and kill them)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cadenza import SQLiteStore, WorkflowStatus
from cadenza.runtime.events import Event

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
