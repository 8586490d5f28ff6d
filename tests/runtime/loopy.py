"""A long loop that records its side effects and can be killed mid-loop, for the loop tests.

As a process (``python loopy.py DB``) it runs :data:`workflow` on the SQLite file DB:

- ``LOOPY_KILL_IN=PATH``: it SIGKILLs itself inside the step instance PATH, the first time;
- ``LOOPY_KILL_AFTER=PATH[@EVENT]``: right after the store committed that event of PATH
  (``step_completed`` by default, or e.g. ``loop_iteration``);
- ``LOOPY_ANNOUNCE=PATH``: it prints ``reached PATH`` on stdout (flushed) when that step
  instance runs, and goes on: the parent kills it once it reads the line;
- ``LOOPY_ITERATIONS`` (default 300) and ``LOOPY_SNAPSHOT_EVERY`` (the engine's default if
  unset) shape the run.

Every handler appends its ``idempotency_key`` to ``$LOOPY_EFFECTS`` before it returns, as an
external side effect would be recorded downstream. ``python loopy.py --dump DB`` prints the one
run in DB (its record, events and snapshot) as JSON: that is how ``old_loop_logs.json`` was
made, by this file run against the code before loop iterations were folded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any, TypedDict

from cadenza import Engine, Event, ExecutionContext, Workflow


class State(TypedDict, total=False):
    n: int
    total: int
    finished: bool


def _effect(ctx: ExecutionContext) -> None:
    path = os.environ["LOOPY_EFFECTS"]
    with open(path, "a") as f:
        f.write(ctx.idempotency_key + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("LOOPY_ANNOUNCE") == ctx.path:
        print(f"reached {ctx.path}", flush=True)
    if os.environ.get("LOOPY_KILL_IN") == ctx.path:
        with open(path) as f:
            if sum(line.strip() == ctx.idempotency_key for line in f) == 1:
                os.kill(os.getpid(), signal.SIGKILL)


def work(state: State, ctx: ExecutionContext) -> State:
    _effect(ctx)
    return {"total": state.get("total", 0) + state.get("n", 0)}


def tally(state: State, ctx: ExecutionContext) -> State:
    _effect(ctx)
    return {"n": state.get("n", 0) + 1}


def finish(state: State, ctx: ExecutionContext) -> State:
    _effect(ctx)
    return {"finished": True}


def build(iterations: int) -> Workflow:
    """``lp`` runs ``work`` then ``tally`` ``iterations`` times, then ``finish`` runs."""
    wf = Workflow("loopy", state=State)
    wf.loop("lp", body=[work, tally], until=f"n >= {iterations}", max_iterations=iterations)
    wf.task(finish)
    return wf


ITERATIONS = int(os.environ.get("LOOPY_ITERATIONS", "300"))
workflow = build(ITERATIONS)


def expected_state(iterations: int) -> dict[str, Any]:
    return {"n": iterations, "total": sum(range(iterations)), "finished": True}


class KillAfter:
    def __init__(self, spec: str) -> None:
        path, _, kind = spec.partition("@")
        self.path, self.kind = path, kind or "step_completed"

    def on_event(self, event: Event, **future: Any) -> None:
        if event.path == self.path and event.type == self.kind:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(db: str) -> None:
    from cadenza import SQLiteStore
    from cadenza.runtime import run as run_module

    if os.environ.get("LOOPY_SNAPSHOT_EVERY"):
        run_module.SNAPSHOT_EVERY = int(os.environ["LOOPY_SNAPSHOT_EVERY"])
    spec = os.environ.get("LOOPY_KILL_AFTER")
    observers = [KillAfter(spec)] if spec else []
    async with Engine(SQLiteStore(db), observers=observers) as engine:
        result = await engine.run(workflow, {}, target=f"{os.path.abspath(__file__)}:workflow")
    print(result.status, flush=True)


async def dump(db: str) -> dict[str, Any]:
    from cadenza import SQLiteStore

    store = SQLiteStore(db)
    await store.open()
    try:
        (run,) = await store.list_runs()
        events = await store.read_events(run.run_id)
        snapshot = await store.load_snapshot(run.run_id)
    finally:
        await store.close()
    return {
        "run": {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "version": run.version,
            "status": str(run.status),
        },
        "events": [
            {k: v for k, v in e.to_row().items() if k not in ("prev_hash", "hash")} for e in events
        ],
        "snapshot": None
        if snapshot is None
        else {"seq": snapshot.seq, "state": snapshot.state, "buffers": snapshot.buffers},
    }


if __name__ == "__main__":
    if sys.argv[1] == "--dump":
        print(json.dumps(asyncio.run(dump(sys.argv[2]))))
    else:
        asyncio.run(main(sys.argv[1]))
