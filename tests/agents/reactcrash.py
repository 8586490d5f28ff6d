"""A REACT workflow whose tools and model record their side effects and can kill their own
process, for the crash tests (``reactcrash.py:workflow``, resumed through the CLI):

- ``REACTCRASH_KILL_IN=TOOL``: inside the first call of that tool (after its effect);
- ``REACTCRASH_KILL_AFTER=PATH``: right after the store committed that sub-step.

Turn 1 fetches two items at once, turn 2 charges, turn 3 answers. The model's replies come
from rules (not a script), so the resuming process answers the same. Every tool call appends
its idempotency key to ``$REACTCRASH_EFFECTS``, and every model call a ``model N`` line (N
messages in)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from cadenza import Engine, Event, ExecutionContext, Message, ScriptedModel, Workflow, tool


def _record(line: str) -> int:
    """Append a line to the effects file; return how often it is there now."""
    path = os.environ["REACTCRASH_EFFECTS"]
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    with open(path) as f:
        return sum(x.strip() == line for x in f)


@tool
async def fetch(item: str, ctx: ExecutionContext) -> str:
    """Fetch an item from the warehouse."""
    await asyncio.sleep(0.01)
    _record(ctx.idempotency_key)
    return f"fetched {item}"


@tool
def charge(amount: int, ctx: ExecutionContext) -> str:
    """Charge the customer."""
    seen = _record(ctx.idempotency_key)
    if os.environ.get("REACTCRASH_KILL_IN") == "charge" and seen == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"charged {amount}"


def shopper(messages: list[Message]) -> Any:
    _record(f"model {len(messages)}")
    last = messages[-1]
    if last.role == "user":
        return {"tool_calls": [{"name": "fetch", "arguments": {"item": i}} for i in "ab"]}
    if last.name == "fetch":
        return {"tool_calls": [{"name": "charge", "arguments": {"amount": 5}}]}
    return f"bought a and b ({last.content})"


workflow = Workflow("reactcrash")
workflow.react(
    "agent", model=ScriptedModel(rules=[shopper]), tools=[fetch, charge], input_key="request"
)


class KillAfter:
    def __init__(self, path: str) -> None:
        self.path = path

    def on_event(self, event: Event, **future: Any) -> None:
        if event.path == self.path and event.type == "step_completed":
            os.kill(os.getpid(), signal.SIGKILL)


async def main(db: str) -> None:
    from cadenza import SQLiteStore

    after = os.environ.get("REACTCRASH_KILL_AFTER")
    observers = [KillAfter(after)] if after else []
    async with Engine(SQLiteStore(db), observers=observers) as engine:
        target = f"{os.path.abspath(__file__)}:workflow"
        result = await engine.run(workflow, {"request": "buy a and b"}, target=target)
    print(result.status)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
