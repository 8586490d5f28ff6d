"""What a circuit breaker costs a call: a rejected call on an open breaker, and an accepted
call (acquire + success) on a closed one, next to the floors they cannot beat.

    python bench/breaker.py [--n 1000000] [--repeat 5] [--json]

Scenarios (engine ``cadenza`` is the breaker, ``floor`` is plain Python in the same loop):

rejected   cadenza: ``try: acquire() except CircuitOpen``, the breaker open (cool-down far off)
           floor:   ``try: f() except E``, ``f`` raising one pre-built exception (its traceback
                    cleared on each raise, or it would grow by a frame per raise)
accepted   cadenza: ``success(acquire())`` on a closed breaker (default config)
           floor:   one call of a no-op function

Each figure is the best of ``--repeat`` loops of ``--n`` iterations, timed with
``time.perf_counter``, garbage collection off, the loop's own cost included (it is the same in
every row). Methods are bound to locals first, as the floors' functions are. Every loop checks
its work afterwards (the count of rejections; the breaker still closed with a full window).
``--json`` prints one object per line: ``scenario``, ``engine``, ``per_call_us``, ``n``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if importlib.util.find_spec("cadenza") is None and os.path.isdir(SRC):
    sys.path.insert(0, SRC)

from cadenza.resilience.breaker import (  # noqa: E402
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
)

BUDGET_US = 5.0  # what a rejected call may cost


class Refused(Exception):
    pass


PREBUILT = Refused("refused")


def _raise() -> None:
    raise PREBUILT.with_traceback(None)


def _noop() -> None:
    return None


def floor_rejected(n: int) -> int:
    f, rejected = _raise, 0
    for _ in range(n):
        try:
            f()
        except Refused:
            rejected += 1
    return rejected


def cadenza_rejected(n: int) -> int:
    breaker = CircuitBreaker("bench", BreakerConfig(window=10, minimum_calls=10, cool_down=1e9))
    for _ in range(10):
        breaker.failure(breaker.acquire())
    assert breaker.state is BreakerState.OPEN
    acquire, rejected = breaker.acquire, 0
    for _ in range(n):
        try:
            acquire()
        except CircuitOpen:
            rejected += 1
    return rejected


def floor_accepted(n: int) -> int:
    f = _noop
    for _ in range(n):
        f()
    return n


def cadenza_accepted(n: int) -> int:
    breaker = CircuitBreaker("bench")
    acquire, success = breaker.acquire, breaker.success
    for _ in range(n):
        success(acquire())
    snap = breaker.snapshot()
    ok = snap["state"] == "closed" and snap["calls"] == min(n, breaker.config.window)
    return n if ok and snap["failures"] == 0 else -1


SCENARIOS: list[tuple[str, str, Callable[[int], int]]] = [
    ("rejected", "floor", floor_rejected),
    ("rejected", "cadenza", cadenza_rejected),
    ("accepted", "floor", floor_accepted),
    ("accepted", "cadenza", cadenza_accepted),
]


def measure(fn: Callable[[int], int], n: int, repeat: int) -> float:
    """Best seconds per iteration over ``repeat`` loops; raises if a loop did not do its work."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            done = fn(n)
            wall = time.perf_counter() - t0
        finally:
            gc.enable()
        if done != n:
            raise SystemExit(f"FAILED: {fn.__name__} did {done} of {n} iterations' work")
        best = min(best, wall)
    return best / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="iterations per loop")
    p.add_argument("--repeat", type=int, default=5, help="loops per row; the best counts")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    args = p.parse_args(argv)

    rows = []
    for scenario, engine, fn in SCENARIOS:
        us = measure(fn, args.n, args.repeat) * 1e6
        rows.append((scenario, engine, us))
        if args.json:
            record = {"scenario": scenario, "engine": engine, "per_call_us": us, "n": args.n}
            print(json.dumps(record), flush=True)
    if args.json:
        return 0

    floors = {scenario: us for scenario, engine, us in rows if engine == "floor"}
    head = ("scenario", "engine", "n", "per_call_us", "vs_floor")
    lines = [head]
    for scenario, engine, us in rows:
        ratio = f"{us / floors[scenario]:.2f}x"
        lines.append((scenario, engine, str(args.n), f"{us:.3f}", ratio))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    lines.insert(1, tuple("-" * w for w in widths))
    for line in lines:
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in pairs]
        print("  ".join(cells).rstrip())
    rejected = next(
        us for scenario, engine, us in rows if (scenario, engine) == ("rejected", "cadenza")
    )
    verdict = "within" if rejected < BUDGET_US else "OVER"
    print(f"\nrejected call: {rejected:.3f} us, {verdict} the {BUDGET_US:g} us budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
