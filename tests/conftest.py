"""Shared fixtures: an engine on the memory store for fast tests of workflow semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cadenza import Engine, MemoryStore, RetryPolicy


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    """An engine on the memory store whose default retries do not wait (workflows that set
    ``max_retries`` retry at once)."""
    async with Engine(MemoryStore(), retry=RetryPolicy(initial_delay=0, jitter=0)) as e:
        yield e
