"""Bulkheads: a named concurrency limit that steps share across all the runs of an engine
(at most 5 calls to the payments API at once), so one workflow cannot starve another. A store
that shares them (PostgreSQL) counts the slots across every worker instead (see
:class:`BulkheadRegistry`)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from cadenza.core.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Bulkhead:
    name: str
    limit: int

    def __post_init__(self) -> None:
        if not self.name:
            raise DefinitionError("a bulkhead needs a name", path="bulkhead.name")
        if not isinstance(self.limit, int) or self.limit < 1:
            raise DefinitionError(
                f"limit must be a positive integer, got {self.limit!r}", path="bulkhead.limit"
            )


class BulkheadRegistry:
    """One semaphore per bulkhead name, for every run of one engine. Subclasses that share
    slots across processes override :meth:`semaphore` (and :meth:`in_use`): a step holds a
    slot for the duration of ``async with registry.semaphore(bulkhead):``."""

    def __init__(self) -> None:
        self._limits: dict[str, int] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def semaphore(self, bulkhead: Bulkhead) -> AbstractAsyncContextManager[Any]:
        self._check(bulkhead)
        return self._semaphores[bulkhead.name]

    def _check(self, bulkhead: Bulkhead) -> None:
        """Remember the bulkhead's limit; a second, different limit for a name is an error."""
        known = self._limits.get(bulkhead.name)
        if known is None:
            self._limits[bulkhead.name] = bulkhead.limit
            self._semaphores[bulkhead.name] = asyncio.Semaphore(bulkhead.limit)
        elif known != bulkhead.limit:
            raise DefinitionError(
                f"bulkhead {bulkhead.name!r} is declared with limit {bulkhead.limit} here and "
                f"{known} elsewhere; one name, one limit",
                path="bulkhead",
            )

    def in_use(self, name: str) -> int:
        """How many calls hold a slot of ``name`` now."""
        sem = self._semaphores.get(name)
        return 0 if sem is None else self._limits[name] - sem._value
