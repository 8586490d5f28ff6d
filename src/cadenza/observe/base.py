"""The observer interface: everything that watches runs (logs, metrics, traces, audit, sinks)
subscribes to the one event stream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import structlog

from cadenza.core.events import Event

_log = structlog.get_logger("cadenza.observe")


class Observer(Protocol):
    """Called once per event, after the event is stored.

    Implementations take keyword-only extras and must accept unknown ones (``**future``), so
    the engine can pass more context later without breaking them. An observer must not block:
    hand slow work to a queue."""

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None: ...


def notify(observers: Iterable[Observer], event: Event, *, workflow: str) -> None:
    """Fan an event out; an observer that raises is logged and never breaks the run."""
    for observer in observers:
        try:
            observer.on_event(event, workflow=workflow)
        except Exception as exc:  # an observer's bug must not fail a workflow
            _log.warning("observer_failed", observer=type(observer).__name__, error=str(exc))
