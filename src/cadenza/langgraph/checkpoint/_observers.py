"""Observers of the threads a checkpointer stores: every event it writes to a thread's run is
told to them as an engine tells its observers of a native run's events (one
:meth:`~cadenza.observe.base.Observer.on_event` per event, with the run's workflow, after the
transaction that stored it has committed; an observer that raises is logged and never fails
the graph). They are called on the thread that called the saver (with ``durability="async"``,
the saver's background writer), so an observer shared with an engine must be thread-safe, as
it must not block."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cadenza.observe.base import Observer, notify

if TYPE_CHECKING:
    from cadenza.langgraph.checkpoint._runlog import Written

__all__ = ["Observed", "publish", "with_observers"]


class Observed(Protocol):
    """A checkpointer that tells observers of the threads it stores."""

    observers: tuple[Observer, ...]

    def with_observers(self, observers: Sequence[Observer]) -> Any: ...


S = TypeVar("S", bound=Observed)


def with_observers(saver: S, observers: Sequence[Observer]) -> S:
    """A shallow clone of ``saver`` (its storage shared) that tells ``observers`` too."""
    if not observers:
        return saver
    clone = copy.copy(saver)
    clone.observers = (*saver.observers, *observers)
    return clone


def publish(observers: Sequence[Observer], written: Sequence[Written]) -> None:
    """Tell ``observers`` of the events written, in order."""
    for workflow, events in written:
        for event in events:
            notify(observers, event, workflow=workflow)
