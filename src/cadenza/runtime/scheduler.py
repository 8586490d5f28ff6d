"""Dataflow scheduling of one graph: a step starts as soon as every predecessor has finished,
runs if at least one incoming edge was taken, and is skipped (which propagates) otherwise.

A step that makes exactly one successor ready runs it in the same task, so a long chain costs
no task creation per step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cadenza.graph.ir import Graph

# run_step(name) -> the successors it routes to (None: all of them)
RunStep = Callable[[str], Awaitable[tuple[str, ...] | None]]
OnSkip = Callable[[str], None]


class GraphDriver:
    def __init__(self, graph: Graph, run_step: RunStep, on_skip: OnSkip) -> None:
        self.graph = graph
        self.run_step = run_step
        self.on_skip = on_skip
        self.remaining = {n: len(p) for n, p in graph.preds.items()}
        self.taken: set[str] = set(graph.entry)
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        for name in self.graph.entry:
            if self.remaining[name] == 0:
                self._spawn(name)
        try:
            await self.finished
        except asyncio.CancelledError:
            await self._cancel_all()
            raise
        if self.failure is not None:
            await self._cancel_all()
            raise self.failure

    def _spawn(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._chain(name))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and self.failure is None:
                self.failure = exc
                for other in self.tasks:
                    other.cancel()
        if (not self.tasks or self.failure is not None) and not self.finished.done():
            self.finished.set_result(None)

    async def _chain(self, name: str | None) -> None:
        while name is not None:
            routes = await self.run_step(name)
            ready = self._resolve(name, routes)
            name = ready[0] if ready else None
            for other in ready[1:]:
                self._spawn(other)

    def _resolve(self, name: str, routes: tuple[str, ...] | None) -> list[str]:
        """Mark ``name`` finished; return the successors that are now ready to run."""
        ready: list[str] = []
        pending = [(name, routes)]
        while pending:
            node, taken_routes = pending.pop()
            for succ in self.graph.succs[node]:
                if taken_routes is None or succ in taken_routes:
                    self.taken.add(succ)
                self.remaining[succ] -= 1
                if self.remaining[succ] == 0:
                    if succ in self.taken:
                        ready.append(succ)
                    else:
                        self.on_skip(succ)
                        pending.append((succ, ()))
        return ready

    async def _cancel_all(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


__all__ = ["GraphDriver", "first_line"]
_ = Any
