"""What runs waiting on a durable timer cost, and how late they wake.

    python bench/timers.py hold [--runs 100000] [--sleep 3600] [--watch 35] [--store URL]
    python bench/timers.py lateness [--runs 10000] [--sleep 5] [--store URL]

``hold``: one process starts ``--runs`` runs of ``before -> wait(--sleep) -> after`` (a fresh
SQLite file by default), 1,000 at a time, each batch once the one before is at its timer;
``--store postgresql://...`` runs them in a :class:`Worker` (``--concurrency``) instead,
submitted first. Once every run is at its timer it watches for ``--watch`` seconds
(longer than a lease renewal period, 10 s). Printed: resident memory over the baseline (the
same process after a warm-up, before the runs start), asyncio tasks, runs held (with a lease)
and lease renewals while watching, and the longest event-loop stall seen by a 10 ms ticker.

``lateness``: ``--runs`` runs sleeping ``--sleep`` seconds each, started together (in batches
of 1,000), all waited for; a run's lateness is the time its wait step completed minus the
timer's fire time, both from its log. Printed: p50, p99, max.

Runs on the code on ``sys.path`` (``PYTHONPATH=src``); it works on versions of Cadenza that
slept in memory too (for a before/after comparison), which have no ``short_sleep``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from cadenza import Engine, Workflow  # noqa: E402
from cadenza.core.events import Event, EventType  # noqa: E402

BATCH = 1000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Timers:
    """Counts the runs that have reached their timer (``timer_set`` events)."""

    def __init__(self) -> None:
        self.set = 0

    def on_event(self, event: Event, **future: Any) -> None:
        if event.type is EventType.TIMER_SET:
            self.set += 1


async def before(state: dict) -> dict:
    return {"before": True}


async def after(state: dict) -> dict:
    return {"after": True}


def sleeper(name: str, seconds: float) -> Workflow:
    wf = Workflow(name)
    wf.step(before)
    wf.wait("nap", seconds=seconds)
    wf.step(after)
    return wf


def make_engine(store: Any, observers: list[Any]) -> Engine:
    return Engine(store, observers=observers)


async def start_all(
    engine: Engine, wf: Workflow, runs: int, timers: Timers | None = None
) -> list[str]:
    """Start ``runs`` runs, :data:`BATCH` at a time; with ``timers``, each batch once the one
    before is at its timer (and, where runs are suspended, out of memory), as runs arriving
    over time would be: what is measured is then what waiting costs, not the high-water mark
    of the allocator after a burst of 100,000 runs in flight at once."""
    run_ids: list[str] = []

    def at_timers() -> bool:
        return timers is not None and timers.set >= len(run_ids)

    for first in range(0, runs, BATCH):
        count = min(BATCH, runs - first)
        run_ids.extend(await asyncio.gather(*(engine.start(wf, {}) for _ in range(count))))
        if timers is not None:
            await until(at_timers)
            if hasattr(engine, "sleeping"):
                await until(lambda: engine.in_flight == 0)
    return run_ids


async def until(check: Any, timeout: float = 3600) -> None:
    limit = time.monotonic() + timeout
    while not check():
        if time.monotonic() > limit:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(0.05)


class Ticker:
    """The longest delay of a 10 ms sleep: how long the event loop stalled."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - t0 - 0.01)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def hold(args: argparse.Namespace, store: Any) -> None:
    timers = Timers()
    engine = make_engine(store, [timers])
    worker_task = None
    async with engine:
        # warm-up: a batch of runs through a sleep (the same code paths, and the allocator
        # grown to a batch in flight), then the baseline
        warm = sleeper("warm_up", 1.5)
        await asyncio.gather(*(engine.run(warm, {}) for _ in range(BATCH)))
        gc.collect()
        timers.set = 0
        base = rss_mib()
        base_tasks = len(asyncio.all_tasks())
        wf = sleeper("hold", args.sleep)
        started = time.perf_counter()
        if args.worker:
            from cadenza.runtime.worker import Worker

            async with Engine(type(store)(store.dsn)) as client:
                for first in range(0, args.runs, BATCH):
                    n = min(BATCH, args.runs - first)
                    await asyncio.gather(*(client.submit(wf, {}) for _ in range(n)))
            worker = Worker(engine, workflows=[wf], concurrency=args.concurrency)
            stop = asyncio.Event()
            worker_task = asyncio.create_task(worker.run(stop))
        else:
            await start_all(engine, wf, args.runs, timers)
        await until(lambda: timers.set >= args.runs and engine.in_flight == 0)
        took = time.perf_counter() - started
        renewals = 0
        renew = engine.store.renew

        async def counted(*a: Any, **kw: Any) -> Any:
            nonlocal renewals
            renewals += 1
            return await renew(*a, **kw)

        engine.store.renew = counted  # type: ignore[method-assign]
        ticker = Ticker()
        ticker.start()
        await asyncio.sleep(args.watch)
        ticker.stop()
        gc.collect()
        grown = rss_mib() - base
        tasks = len(asyncio.all_tasks()) - base_tasks
        held = len(getattr(engine, "_epochs", {}))
        print(f"{args.runs} runs waiting {args.sleep:g} s ({store!r})")
        print(f"  all at their timers after {took:.1f} s")
        print(f"  memory over baseline: {grown:.1f} MiB ({grown * 2**20 / args.runs:.0f} B/run)")
        print(f"  asyncio tasks over baseline: {tasks}")
        print(f"  runs held with a lease: {held}; lease renewals in {args.watch:g} s: {renewals}")
        print(f"  longest event-loop stall while watching: {ticker.worst * 1000:.1f} ms")
        if worker_task is not None:
            stop.set()
            await worker_task


async def lateness(args: argparse.Namespace, store: Any) -> None:
    engine = make_engine(store, [])
    async with engine:
        wf = sleeper("late", args.sleep)
        started = time.perf_counter()
        run_ids = await start_all(engine, wf, args.runs)
        began = time.perf_counter() - started
        results = await asyncio.gather(*(engine.wait(r) for r in run_ids))
        assert all(r.ok for r in results), "every run completes"
        late: list[float] = []
        for run_id in run_ids:
            events = await engine.store.read_events(run_id)
            fire_at = next(e for e in events if e.type is EventType.TIMER_SET).data["fire_at"]
            woke = next(e for e in events if e.type is EventType.STEP_COMPLETED and e.path == "nap")
            late.append(woke.ts - fire_at)
    late.sort()
    q = statistics.quantiles(late, n=100)
    print(f"{args.runs} runs sleeping {args.sleep:g} s ({store!r}), started in {began:.1f} s")
    print(
        f"  wake lateness: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
        f"max {late[-1] * 1000:.0f} ms, min {late[0] * 1000:.0f} ms"
    )


def open_store(url: str | None, tmp: str) -> Any:
    if url and url.startswith(("postgres://", "postgresql://")):
        from cadenza.store.postgres import PostgresStore

        return PostgresStore(url)
    from cadenza.store.sqlite import SQLiteStore

    return SQLiteStore(url or os.path.join(tmp, "timers.db"))


def main() -> None:
    from cadenza.observe.logging import configure_logging

    configure_logging("WARNING")  # a debug line per suspended run would be timed too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["hold", "lateness"])
    parser.add_argument("--runs", type=int)
    parser.add_argument("--sleep", type=float)
    parser.add_argument("--watch", type=float, default=35.0)
    parser.add_argument("--store", help="a SQLite path or postgresql:// URL (default: temp)")
    parser.add_argument("--concurrency", type=int, default=500, help="worker (PostgreSQL)")
    args = parser.parse_args()
    args.worker = bool(args.store and args.store.startswith(("postgres://", "postgresql://")))
    if args.mode == "hold":
        args.runs = args.runs or 100_000
        args.sleep = args.sleep or 3600.0
    else:
        args.runs = args.runs or 10_000
        args.sleep = args.sleep or 5.0
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.store, tmp)
        asyncio.run(hold(args, store) if args.mode == "hold" else lateness(args, store))


if __name__ == "__main__":
    main()
