"""Which recorded step paths lie inside which loop iteration, so that the fold can forget an
iteration's records the moment it finishes without searching the whole progress for them.

Paths name iterations with ``#``: ``lp#3/charge`` is step ``charge`` in iteration 3 of loop
``lp``; ``lp#3/fan[1]/inner#2/x`` lies inside ``lp#3`` and inside ``lp#3/fan[1]/inner#2``.
(An agent's turns are named the same way, ``agent#2/model``; they are indexed like
iterations but never finish as one, so their records stay, as they must.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def enclosing(path: str) -> list[str]:
    """The iterations ``path`` lies inside, outermost first (``[]`` outside any loop)."""
    out: list[str] = []
    start = 0
    while True:
        mark = path.find("#", start)
        if mark < 0:
            return out
        slash = path.find("/", mark)
        if slash < 0:
            return out
        out.append(path[:slash])
        start = slash + 1


def iteration_record(path: str, record: Mapping[str, Any]) -> bool:
    """Whether ``done[path]`` is the record of a finished loop iteration, as snapshots held
    them before iterations were folded: ``{"iteration": n, "exit": bool}`` under ``lp#n``.
    (A step's own record never has ``iteration``: the fold keeps only replayed keys.)"""
    return "iteration" in record and "#" in path.rpartition("/")[2]


class Inside:
    """iteration path -> the recorded paths inside it. Derived from the progress it indexes
    (never stored): :meth:`Progress.restore` rebuilds it."""

    __slots__ = ("_paths",)

    def __init__(self) -> None:
        self._paths: dict[str, set[str]] = {}

    def track(self, path: str) -> None:
        """Note that ``path`` has a record in the progress."""
        if "#" not in path:  # most paths: nothing to do
            return
        for iteration in enclosing(path):
            self._paths.setdefault(iteration, set()).add(path)

    def pop(self, iteration: str) -> set[str]:
        """The paths recorded inside ``iteration``, no longer indexed anywhere."""
        paths = self._paths.pop(iteration, set())
        for path in paths:
            for other in enclosing(path):
                if other == iteration:
                    continue
                held = self._paths.get(other)
                if held is not None:
                    held.discard(path)
                    if not held:
                        del self._paths[other]
        return paths

    def __len__(self) -> int:
        return sum(len(paths) for paths in self._paths.values())
