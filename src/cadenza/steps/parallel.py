"""PARALLEL and map: run branches concurrently (at most ``max_concurrent`` at once), each in
its own scope, and join their updates in branch order through the state's reducers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cadenza.core.errors import CadenzaError, StepFailed
from cadenza.core.events import EventType
from cadenza.graph.ir import FailurePolicy, Graph, Step
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_parallel(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    await run_branches(run, step, scope, path, [(g, {}) for g in step.branches])


async def execute_map(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    assert step.body is not None
    items = run.progress.fanout.get(path)
    if items is None:
        items = _items(step, scope.state, path)
        await run.commit(EventType.FANNED_OUT, path, scope=scope, data={"items": items})
    body = step.body
    await run_branches(
        run, step, scope, path, [(body, {"item": it, "index": i}) for i, it in enumerate(items)]
    )


def _items(step: Step, state: dict[str, Any], path: str) -> list[Any]:
    source = step.items
    if isinstance(source, str):
        if source not in state:
            raise StepFailed(
                path, f"map items key {source!r} is not in the state", error_type="KeyError"
            )
        value = state[source]
    else:
        assert source is not None
        try:
            value = source(dict(state))
        except Exception as exc:
            raise StepFailed(path, first_line(exc), error_type=type(exc).__name__) from exc
    if not isinstance(value, list | tuple):
        raise StepFailed(
            path, f"map items must be a list, got {type(value).__name__}", error_type="TypeError"
        )
    return list(value)


async def run_branches(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    branches: Sequence[tuple[Graph, dict[str, Any]]],
) -> None:
    keys = [f"{path}[{i}]" for i in range(len(branches))]
    limit = asyncio.Semaphore(step.max_concurrent) if step.max_concurrent else None
    buffers = run.progress.buffers

    async def branch(i: int) -> None:
        graph, extra = branches[i]
        key = keys[i]
        child = scope.child(key, buffers.get(key, []), run.reducers, **extra)
        if limit is None:
            await run.run_graph(graph, child, key + "/")
        else:
            async with limit:
                await run.run_graph(graph, child, key + "/")

    tasks = [asyncio.ensure_future(branch(i)) for i in range(len(branches))]
    try:
        if step.on_failure is FailurePolicy.FAIL_FAST:
            await _fail_fast(tasks)
        else:
            await _collect(tasks, keys, path)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data={"join": keys})


async def _fail_fast(tasks: Sequence[asyncio.Future[None]]) -> None:
    pending: set[asyncio.Future[None]] = set(tasks)
    while pending:
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in finished:
            exc = task.exception()
            if exc is not None:
                raise exc


async def _collect(tasks: Sequence[asyncio.Future[None]], keys: list[str], path: str) -> None:
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [(k, r) for k, r in zip(keys, results, strict=True) if isinstance(r, BaseException)]
    if not errors:
        return
    for _, exc in errors:
        if not isinstance(exc, Exception):
            raise exc
    detail = "; ".join(
        str(exc) if isinstance(exc, CadenzaError) else f"{key}: {first_line(exc)}"
        for key, exc in errors
    )
    raise StepFailed(
        path, f"{len(errors)} of {len(keys)} branches failed: {detail}", error_type="BranchesFailed"
    )
