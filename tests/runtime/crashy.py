"""A workflow that records its side effects and can kill its own process at chosen points.

Used by the crash tests as the workflow (``crashy.py:workflow``, resumed through the CLI) and
as the first process (``python crashy.py DB``), which dies with SIGKILL when told to:

- ``CRASHY_KILL_IN=PATH``: inside the step instance PATH, the first time it runs;
- ``CRASHY_KILL_AFTER=PATH[@EVENT]``: right after the store committed that step's event
  (``step_completed`` by default, or e.g. ``timer_set``).

Every handler appends ``idempotency_key`` to the file ``$CRASHY_EFFECTS`` before it returns,
as an external side effect would be recorded downstream."""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import sys
from typing import Annotated, Any, TypedDict

from cadenza import Engine, Event, ExecutionContext, Workflow


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    n: int


def _effect(ctx: ExecutionContext) -> None:
    path = os.environ["CRASHY_EFFECTS"]
    with open(path, "a") as f:
        f.write(ctx.idempotency_key + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("CRASHY_KILL_IN") == ctx.path:
        with open(path) as f:
            if sum(line.strip() == ctx.idempotency_key for line in f) == 1:
                os.kill(os.getpid(), signal.SIGKILL)


def step(tag: str, delay: float = 0.0) -> Any:
    async def handler(state: State, ctx: ExecutionContext) -> State:
        if delay:
            await asyncio.sleep(delay)
        _effect(ctx)
        return {"log": [tag]}

    handler.__name__ = handler.__qualname__ = tag
    return handler


def count(state: State, ctx: ExecutionContext) -> State:
    _effect(ctx)
    return {"n": state.get("n", 0) + 1, "log": [f"count{state.get('n', 0)}"]}


DELAY = float(os.environ.get("CRASHY_DELAY", "0"))

workflow = Workflow("crashy", state=State)
workflow.task(step("a", DELAY))
workflow.parallel(
    "fan", [step("b1", DELAY), [step("b2", DELAY), step("b3", DELAY)]], max_concurrent=2
)
workflow.loop("again", body=count, until="n >= 3", max_iterations=5)
workflow.wait("pause", seconds=float(os.environ.get("CRASHY_WAIT", "0.3")))
workflow.task(step("d", DELAY))

EXPECTED_LOG = ["a", "b1", "b2", "b3", "count0", "count1", "count2", "d"]


class KillAfter:
    def __init__(self, spec: str) -> None:
        path, _, kind = spec.partition("@")
        self.path, self.kind = path, kind or "step_completed"

    def on_event(self, event: Event, **future: Any) -> None:
        if event.path == self.path and event.type == self.kind:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(db: str) -> None:
    from cadenza import SQLiteStore

    spec = os.environ.get("CRASHY_KILL_AFTER")
    observers = [KillAfter(spec)] if spec else []
    async with Engine(SQLiteStore(db), observers=observers) as engine:
        result = await engine.run(workflow, {}, target=f"{os.path.abspath(__file__)}:workflow")
    print(result.status)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
