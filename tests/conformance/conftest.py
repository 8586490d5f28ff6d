"""The ``store`` fixture: every test in this folder runs once per registered store.

A store joins the suite through a *harness* (see :class:`StoreHarness`). The built-in ones are
``memory`` and ``sqlite``; another store adds itself from its own module, without editing this
file, by placing ``harness_<name>.py`` next to it that defines ``HARNESSES: dict[str,
HarnessFactory]``, e.g. ``HARNESSES = {"postgres": PostgresHarness}``. A harness that cannot run
here (no server configured) calls ``pytest.skip`` in ``start``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from cadenza.store.base import Store
from cadenza.store.memory import MemoryStore
from cadenza.store.sqlite import SQLiteStore


class StoreHarness(Protocol):
    """Creates a fresh, empty store for one test and tears it down afterwards."""

    #: Whether the data outlives the store object (then ``reopen`` must return the same data).
    durable: bool

    async def start(self) -> Store: ...

    async def reopen(self) -> Store:
        """Close the current store and open a new one over the same data."""
        ...

    async def stop(self) -> None: ...


HarnessFactory = Callable[[Path], StoreHarness]  # called with the test's tmp_path


class MemoryHarness:
    durable = False

    def __init__(self, tmp_path: Path) -> None:
        self.store = MemoryStore()

    async def start(self) -> Store:
        await self.store.open()
        return self.store

    async def reopen(self) -> Store:
        raise NotImplementedError("the memory store keeps nothing across instances")

    async def stop(self) -> None:
        await self.store.close()


class SQLiteHarness:
    durable = True

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "conformance.db"
        self.store = SQLiteStore(self.path)

    async def start(self) -> Store:
        await self.store.open()
        return self.store

    async def reopen(self) -> Store:
        await self.store.close()
        self.store = SQLiteStore(self.path)
        await self.store.open()
        return self.store

    async def stop(self) -> None:
        await self.store.close()


HARNESSES: dict[str, HarnessFactory] = {"memory": MemoryHarness, "sqlite": SQLiteHarness}


def _load_extra_harnesses() -> None:
    for file in sorted(Path(__file__).parent.glob("harness_*.py")):
        spec = importlib.util.spec_from_file_location(f"_cadenza_{file.stem}", file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        HARNESSES.update(module.HARNESSES)


_load_extra_harnesses()


@pytest.fixture(params=list(HARNESSES))
def store_harness(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    return HARNESSES[request.param](tmp_path)


@pytest.fixture
async def store(store_harness: StoreHarness) -> AsyncIterator[Store]:
    yield await store_harness.start()
    await store_harness.stop()
