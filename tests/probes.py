"""Small instruments for tests."""

from __future__ import annotations

import asyncio
from typing import Any


class Peak:
    """Counts how many calls of :meth:`busy` run at once, and the most there ever were."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def busy(self, state: Any) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
