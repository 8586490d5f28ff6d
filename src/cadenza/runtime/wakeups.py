"""Who to tell that there may be new work for this engine: a hint from the store, a run of
its own ending (a slot is free), a run it suspended coming due while a worker claims for it."""

from __future__ import annotations

from collections.abc import Callable


class Wakeups:
    """Callbacks (no arguments, must not block) to call when there may be new work."""

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def fire(self) -> None:
        for callback in tuple(self._callbacks):
            callback()
