"""WAIT: a durable timer, or a wait for a named signal (with an optional timeout).

The fire time is in the log, so a restarted run waits only for what is left. A run waiting
for a signal stops executing and holds nothing; ``engine.signal`` delivers the signal and
continues it. A run whose only work left is a timer (at least ``Engine(short_sleep=)``
seconds long) is suspended too, and woken when it fires (see :mod:`cadenza.runtime.sleeps`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cadenza.core.errors import StepFailed, Suspended
from cadenza.core.events import EventType
from cadenza.graph.ir import Step
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_wait(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    fire_at = run.progress.timers.get(path)
    if fire_at is None and step.seconds is not None:
        fire_at = run.clock.now() + step.seconds
        await run.commit(EventType.TIMER_SET, path, scope=scope, data={"fire_at": fire_at})
    signal = step.options.get("signal")
    if signal is None:
        assert fire_at is not None
        await run.sleeps.until(fire_at)  # a long one suspends the run: it holds nothing
        await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data={"fire_at": fire_at})
        return None
    arrived = _unconsumed(run, str(signal))
    if arrived is not None:
        data: dict[str, Any] = {"signal_seq": arrived["seq"]}
        output = step.options.get("output")
        if output:
            data["update"] = {output: arrived.get("payload")}
        await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data=data)
        return None
    if fire_at is not None and fire_at <= run.clock.now():
        raise StepFailed(
            path, f"no signal {signal!r} within {step.seconds:g}s", error_type="Timeout"
        )
    raise Suspended(path, f"signal {signal!r}")


def _unconsumed(run: RunExecution, name: str) -> dict[str, Any] | None:
    taken = {d["signal_seq"] for d in run.progress.done.values() if "signal_seq" in d}
    return next(
        (s for s in run.progress.signals if s["name"] == name and s["seq"] not in taken), None
    )
