"""Checkpoints written behind the run: LangGraph's ``durability="async"``.

With ``"async"`` (LangGraph's default) a run hands each checkpointer call (``put``,
``put_writes``) to its saver's writer, a background thread that makes them in the order
given (with ``ainvoke``/``astream``: a task of the run's event loop, :class:`AsyncWriteBehind`),
and goes on to the next step; the run waits for them when it ends (its
``invoke``/``stream`` returns only once they are stored, and raises a saver's error there)
and before it reads the saver. A crash can lose the steps not written yet, as with
LangGraph's ``"async"``; ``"sync"`` writes each step before the next one starts.

The writer takes every call queued since it last looked and gives them to the saver at
once: a saver with ``save_batch`` (Cadenza's) stores them in one transaction, so a run
whose nodes are quick pays for one commit rather than one per call (group commit). Other
savers get the calls one by one, as LangGraph's background executor makes them.

One writer per saver object, started on first use; it stops after a second with nothing
to do and starts again when needed. A run's calls after one of them failed are dropped
(the run fails with that error); other runs' calls are not affected.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ("AsyncWriteBehind", "Owner", "WriteBehind", "flush_saver", "writer_for")

#: Calls queued at most before a run waits for the writer (bounds what a crash loses).
MAX_QUEUED = 1024
#: Calls given to the saver at once at most.
MAX_BATCH = 256
#: Seconds an idle writer thread waits before it stops.
IDLE_S = 1.0


class Owner:
    """The calls of one run: how many it queued, and the first error among them."""

    __slots__ = ("error", "queued")

    def __init__(self) -> None:
        self.queued = 0  # the writer's ticket of this run's last call
        self.error: BaseException | None = None


class WriteBehind:
    """The background writer of one saver (see the module docstring).

    One batch is written at a time, by the thread or by a run waiting in :meth:`flush`,
    which writes what is still queued itself rather than hand it over to the thread (a run
    of quick nodes ends before the thread is scheduled: its calls are then stored without
    a switch of threads)."""

    def __init__(self, saver: Any) -> None:
        self._saver = weakref.ref(saver)
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Owner, str, tuple[Any, ...]]] = deque()
        self._sent = 0  # tickets handed out
        self._done = 0  # tickets written (or dropped)
        self._busy = False  # a batch is being written
        self._thread: threading.Thread | None = None

    def submit(self, owner: Owner, method: str, args: tuple[Any, ...]) -> None:
        """Queue ``saver.<method>(*args)`` for ``owner``'s run."""
        cond, queue = self._cond, self._queue
        with cond:
            while len(queue) >= MAX_QUEUED:
                self._start()
                cond.wait()
            self._sent = ticket = self._sent + 1
            owner.queued = ticket
            queue.append((ticket, owner, method, args))
            if len(queue) == 1:  # the writer waits for work (or is not running): wake it
                self._start()
                cond.notify_all()

    def flush(self, owner: Owner | None = None) -> None:
        """Wait until ``owner``'s calls (without one: everything queued so far) are written,
        writing them in this thread when the writer is not at it; raise ``owner``'s error
        (once). Calls are written in the order queued."""
        cond = self._cond
        with cond:
            target = owner.queued if owner is not None else self._sent
        while True:
            with cond:
                while self._busy:
                    cond.wait()
                if self._done >= target:
                    break
                batch = self._take()
            self._write_batch(batch)
        if owner is not None and owner.error is not None:
            error, owner.error = owner.error, None
            raise error

    def _take(self) -> list[tuple[int, Owner, str, tuple[Any, ...]]]:
        """The next batch, now being written (the lock is held)."""
        queue = self._queue
        self._busy = True
        batch = [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]
        self._cond.notify_all()  # room in the queue
        return batch

    def _write_batch(self, batch: Sequence[tuple[int, Owner, str, tuple[Any, ...]]]) -> None:
        try:
            self._write(batch)
        except BaseException as exc:  # not a saver's error (those are handed to the runs)
            for _, owner, _, _ in batch:
                if owner.error is None:
                    owner.error = exc
            raise
        finally:
            with self._cond:
                self._busy = False
                self._done = batch[-1][0]
                self._cond.notify_all()

    def _start(self) -> None:
        """Start the thread if none runs (the lock is held)."""
        thread = self._thread
        if self._queue and (thread is None or not thread.is_alive()):
            self._thread = thread = threading.Thread(
                target=self._work, name="cadenza-checkpoint-writer", daemon=True
            )
            thread.start()

    def _work(self) -> None:
        cond, queue = self._cond, self._queue
        while True:
            with cond:
                ready = cond.wait_for(lambda: bool(queue) and not self._busy, timeout=IDLE_S)
                if not ready:
                    if not queue and self._thread is threading.current_thread():
                        self._thread = None
                        return
                    continue
                batch = self._take()
            self._write_batch(batch)

    def _write(self, batch: Sequence[tuple[int, Owner, str, tuple[Any, ...]]]) -> None:
        live = [item for item in batch if item[1].error is None]
        if not live:
            return
        saver = self._saver()
        if saver is None:  # pragma: no cover - the runs hold their saver until they flush
            return
        save_batch = getattr(saver, "save_batch", None)
        if save_batch is not None and len(live) > 1:
            try:
                save_batch([(method, args) for _, _, method, args in live])
                return
            except Exception:  # nothing was stored: make the calls one by one to see whose failed
                pass
        for _, owner, method, args in live:
            if owner.error is not None:  # the run is failing: its later calls are dropped
                continue
            try:
                getattr(saver, method)(*args)
            except Exception as exc:  # handed to the run, raised where it waits
                owner.error = exc


class AsyncWriteBehind:
    """The same for a run of the async driver (``ainvoke``/``astream``): the saver's async
    methods are awaited by a task of the run's event loop, behind the run. Calls queued
    while the task writes go together next (``asave_batch`` where the saver has it); the run
    awaits :meth:`settle` when it ends."""

    def __init__(self, saver: Any) -> None:
        self.saver = saver
        self._queued: list[tuple[str, tuple[Any, ...]]] = []
        self._task: asyncio.Future[None] | None = None
        self.error: BaseException | None = None

    def submit(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        if self.error is not None:  # the run is failing: its later calls are dropped
            return
        self._queued.extend(calls)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        saver = self.saver
        while self._queued and self.error is None:
            calls, self._queued = self._queued, []
            try:
                batch = getattr(saver, "asave_batch", None)
                if batch is not None and len(calls) > 1:
                    await batch(calls)
                else:
                    for method, args in calls:
                        await getattr(saver, "a" + method)(*args)
            except Exception as exc:  # raised where the run settles
                self.error = exc

    async def settle(self) -> None:
        """Wait until every call is stored; raise the first error (once)."""
        while self._task is not None:
            task, self._task = self._task, None
            await task
            if self._queued and self.error is None:
                self._task = asyncio.ensure_future(self._drain())
        if self.error is not None:
            error, self.error = self.error, None
            raise error


_writers: weakref.WeakKeyDictionary[Any, WriteBehind] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def writer_for(saver: Any) -> WriteBehind | None:
    """The saver's writer (made on first use); ``None`` for a saver that cannot be weakly
    referenced (its calls are then made in the run's thread)."""
    try:
        writer = _writers.get(saver)
        if writer is not None:
            return writer
        with _lock:
            writer = _writers.get(saver)
            if writer is None:
                writer = _writers[saver] = WriteBehind(saver)
    except TypeError:  # not hashable, or not weakly referenceable
        return None
    return writer


def flush_saver(saver: Any) -> None:
    """Wait for the calls queued for ``saver`` (before reading it)."""
    if saver is None:
        return
    try:
        writer = _writers.get(saver)
    except TypeError:
        return
    if writer is not None:
        writer.flush()


def _forget_writers() -> None:  # pragma: no cover - runs in a forked child
    _writers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers)
