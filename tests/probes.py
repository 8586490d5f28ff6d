"""Small instruments for tests."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest


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


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip a test, saying why, when a package of an optional extra is not installed."""
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"needs {module!r}, from the {extra!r} extra: pip install '.[{extra}]'",
    )
