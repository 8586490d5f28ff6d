"""Wake-ups for whoever waits on a run's log: an observer of the server's engine that tells
streams and commands that a run has new events, so they read the store at once instead of at
their next poll. The store stays the source of what is sent; a wake-up only says "look now".
Events committed by other processes (workers, the CLI) wake nobody here and are found by the
poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from cadenza.core.events import Event

__all__ = ["EventHub", "Subscription", "wait_for"]


class Subscription:
    """What a subscriber waits on: an event set when a run it follows commits, and which runs
    did (with their workflows) since it last looked."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.runs: dict[str, str] = {}

    def tell(self, run_id: str, workflow: str) -> None:
        self.runs[run_id] = workflow
        self.event.set()

    def take(self) -> dict[str, str]:
        """The runs that committed since the last call (run id -> workflow); clears the
        event, so that a commit from now on sets it again."""
        runs, self.runs = self.runs, {}
        self.event.clear()
        return runs


class EventHub:
    """An :class:`~cadenza.observe.base.Observer`: tells those subscribed to a run (or to
    every run) when that run commits an event in this process."""

    def __init__(self) -> None:
        self._runs: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        if event.seq == 0:  # a live step start: not in the log, nothing to read
            return
        for subscription in self._runs.get(event.run_id, ()):
            subscription.tell(event.run_id, workflow)
        for subscription in self._all:
            subscription.tell(event.run_id, workflow)

    @contextlib.contextmanager
    def subscribe(self, run_id: str | None = None) -> Iterator[Subscription]:
        """Follow ``run_id`` (``None``: every run) while the block runs."""
        subscription = Subscription()
        group = self._all if run_id is None else self._runs.setdefault(run_id, set())
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if run_id is not None and not group:
                self._runs.pop(run_id, None)

    @property
    def subscribers(self) -> int:
        return len(self._all) + sum(len(g) for g in self._runs.values())


async def wait_for(waiter: asyncio.Event, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for ``waiter``; whether it was set."""
    if timeout <= 0:
        return waiter.is_set()
    try:
        async with asyncio.timeout(timeout):
            await waiter.wait()
    except TimeoutError:
        return False
    return True
