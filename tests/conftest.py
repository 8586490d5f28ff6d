"""Shared fixtures: an engine on the memory store for fast tests of workflow semantics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cadenza import Engine, MemoryStore


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine(MemoryStore()) as e:
        yield e
