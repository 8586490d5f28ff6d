"""Driving a ``Loop`` to its end, sync or async, yielding whenever output may be waiting.

The sync driver calls nodes directly, one after the other; the async one runs a step's
tasks concurrently and does every checkpointer call through the saver's async methods."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from cadenza.langgraph._engine.loop import Loop
from cadenza.langgraph._engine.runner import arun_task, run_task
from cadenza.langgraph._engine.writeback import flush_saver
from cadenza.langgraph.errors import (
    ErrorCode,
    GraphInterrupt,
    GraphRecursionError,
    create_error_message,
)

__all__ = ("adrive", "drive", "recursion_error")


def recursion_error(loop: Loop) -> GraphRecursionError:
    return GraphRecursionError(
        create_error_message(
            message=(
                f"Recursion limit of {loop.config['recursion_limit']} reached without hitting "
                "a stop condition. You can increase the limit by setting the "
                "`recursion_limit` config key."
            ),
            error_code=ErrorCode.GRAPH_RECURSION_LIMIT,
        )
    )


def drive(loop: Loop, eager: bool = False) -> Iterator[None]:
    """Run the loop. Yields where LangGraph's runner hands output to the caller: when a
    step's tasks start, after each task (unless a lone task runs without ``eager``
    streaming), and once the run is over; output queued when an error escapes is dropped,
    as LangGraph drops it."""
    try:
        saver = loop.saver
        if saver is not None:
            # calls still queued for the saver (a run left unfinished, another thread's) are
            # stored before the thread is read; a no-op when nothing is queued
            flush_saver(saver)
        loop.start(saver.get_tuple(loop.position.load_config()) if saver is not None else None)
        while loop.tick():
            if loop.cache is not None:
                loop.match_cached()
            yield
            tasks = loop.pending()
            if len(tasks) == 1 and not eager:
                task = tasks[0]
                try:
                    run_task(task)
                except BaseException as exc:
                    loop.commit(task, exc)
                    yield
                    raise
                if loop.calls is not None:
                    loop.calls.hold_writes()
                loop.commit(task, None)
            elif tasks:
                yield from _run_all(loop, tasks)
            loop.after_tick()
    except BaseException as exc:
        handled = loop.exit(exc)
        if not handled:
            with contextlib.suppress(Exception):  # the run's own error is the one to raise
                _settle(loop)
            raise
        _settle(loop)
    else:
        loop.exit(None)
        _settle(loop)
    yield
    if loop.status == "out_of_steps":
        raise recursion_error(loop)


def _run_all(loop: Loop, tasks: list[Any]) -> Iterator[None]:
    """Run every task of the step, as LangGraph's thread pool starts them all. Output is
    handed over after each task until one fails; then the rest still run and are
    recorded, and the first failure is raised (or the step's interrupts together)."""
    interrupts: list[Any] = []
    failure: BaseException | None = None
    for task in tasks:
        try:
            run_task(task)
        except GraphInterrupt as exc:
            loop.commit(task, exc)
            interrupts.extend(exc.args[0] if exc.args else ())
        except Exception as exc:
            loop.commit(task, exc)
            if failure is None:
                failure = exc
                yield
        else:
            loop.commit(task, None)
        if failure is None:
            yield
    if failure is not None:
        raise failure
    if interrupts:
        raise GraphInterrupt(tuple(interrupts))


def _settle(loop: Loop) -> None:
    if loop.calls is not None:
        loop.calls.settle()


async def _asettle(loop: Loop) -> None:
    if loop.calls is not None:
        await loop.calls.asettle()


async def _flush(loop: Loop) -> None:
    """Make the saver calls the loop queued: now, or ("async") behind the run."""
    if loop.cache is not None and loop.cache.entries:
        await loop.cache.astore()
    if loop.calls is None:
        return
    calls = loop.calls.take_io()
    behind = loop.calls.behind
    if behind is not None:
        if calls:
            behind.submit(calls)
        return
    for method, args in calls:
        await getattr(loop.saver, "a" + method)(*args)


async def adrive(loop: Loop, wake: asyncio.Event | None = None) -> AsyncIterator[None]:
    """The async driver, with the same hand-over points as ``drive``. ``wake`` is set by
    the output buffer, so that chunks a node streams while it runs are handed over before
    it finishes."""
    try:
        saver = loop.saver
        if saver is not None:
            flush_saver(saver)  # calls a sync run handed to the saver's writer thread
        saved = await saver.aget_tuple(loop.position.load_config()) if saver is not None else None
        loop.start(saved)
        await _flush(loop)
        while loop.tick():
            if loop.cache is not None:
                await loop.amatch_cached()
            await _flush(loop)
            yield
            tasks = loop.pending()
            if len(tasks) == 1 and wake is None:
                task = tasks[0]
                try:
                    await arun_task(task)
                except BaseException as exc:
                    loop.commit(task, exc)
                    await _flush(loop)
                    yield
                    raise
                loop.commit(task, None)
                await _flush(loop)
            elif tasks:
                async for _ in _arun_all(loop, tasks, wake):
                    yield
            loop.after_tick()
            await _flush(loop)
    except BaseException as exc:
        handled = loop.exit(exc)
        await _flush(loop)
        if not handled:
            with contextlib.suppress(Exception):  # the run's own error is the one to raise
                await _asettle(loop)
            raise
        await _asettle(loop)
    else:
        loop.exit(None)
        await _flush(loop)
        await _asettle(loop)
    yield
    if loop.status == "out_of_steps":
        raise recursion_error(loop)


async def _arun_all(
    loop: Loop, tasks: list[Any], wake: asyncio.Event | None
) -> AsyncIterator[None]:
    """Run tasks concurrently; a failure cancels the rest once it is recorded."""
    running = {asyncio.ensure_future(arun_task(t)): t for t in tasks}
    pending = set(running)
    interrupts: list[Any] = []
    failure: BaseException | None = None
    try:
        while pending:
            waits = set(pending)
            waiter = None
            if wake is not None:
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                waits.add(waiter)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if waiter is not None and not waiter.done():
                waiter.cancel()
            for fut in done:
                if fut is waiter:
                    continue
                pending.discard(fut)
                task = running[fut]
                exc = fut.exception()
                if exc is None:
                    loop.commit(task, None)
                elif isinstance(exc, GraphInterrupt):
                    loop.commit(task, exc)
                    interrupts.extend(exc.args[0] if exc.args else ())
                else:
                    loop.commit(task, exc)
                    failure = failure or exc
            await _flush(loop)
            yield
            if failure is not None and pending:
                for fut in pending:
                    fut.cancel()
                await asyncio.wait(pending)
                pending = set()
    finally:
        for fut in running:
            if not fut.done():
                fut.cancel()
    if failure is not None:
        raise failure
    if interrupts:
        raise GraphInterrupt(tuple(interrupts))
