"""WAIT: a durable timer. The fire time is in the log, so a restarted run waits only for
what is left."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from cadenza.graph.ir import Step
from cadenza.runtime.events import EventType
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_wait(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.seconds is not None
    fire_at = run.progress.timers.get(path)
    if fire_at is None:
        fire_at = time.time() + step.seconds
        await run.commit(EventType.TIMER_SET, path, scope=scope, data={"fire_at": fire_at})
    delay = fire_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data={"fire_at": fire_at})
    return None
