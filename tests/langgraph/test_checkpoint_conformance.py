"""LangGraph's published checkpointer conformance suite (``langgraph-checkpoint-conformance``)
against each of Cadenza's savers, every capability included: the base ones and the optional
``delete_for_runs``, ``copy_thread`` and ``prune``.

The suite calls the async methods. The sync savers' async methods run their sync ones (inline
for SQLite, in a worker thread for PostgreSQL), and a variant of each runs the suite through
the sync methods directly, so both APIs of every saver are held to it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, DetectedCapabilities

pytest.importorskip(
    "psycopg", reason="the postgres extra is not installed: pip install '.[postgres]'"
)

from cadenza.langgraph.checkpoint.postgres import PostgresSaver
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
from tests.langgraph.checkpoint_dbs import KINDS, database, saver


class _SyncCalls:
    """Runs the suite's async calls through a saver's sync methods."""

    async def aget_tuple(self, config: Any) -> Any:
        return self.get_tuple(config)  # type: ignore[attr-defined]

    async def alist(self, config: Any, **kw: Any) -> AsyncIterator[Any]:
        for item in list(self.list(config, **kw)):  # type: ignore[attr-defined]
            yield item

    async def aput(self, *args: Any) -> Any:
        return self.put(*args)  # type: ignore[attr-defined]

    async def aput_writes(self, *args: Any, **kw: Any) -> None:
        self.put_writes(*args, **kw)  # type: ignore[attr-defined]

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)  # type: ignore[attr-defined]

    async def adelete_for_runs(self, run_ids: Any) -> None:
        self.delete_for_runs(run_ids)  # type: ignore[attr-defined]

    async def acopy_thread(self, source: str, target: str) -> None:
        self.copy_thread(source, target)  # type: ignore[attr-defined]

    async def aprune(self, thread_ids: Any, *, strategy: str = "keep_latest") -> None:
        self.prune(thread_ids, strategy=strategy)  # type: ignore[attr-defined]


class SyncSqliteSaver(_SyncCalls, SqliteSaver):
    pass


class SyncPostgresSaver(_SyncCalls, PostgresSaver):
    pass


@pytest.fixture(params=[*KINDS, "sqlite-sync-api", "postgres-sync-api"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_every_capability_passes(kind: str, tmp_path: Path) -> None:
    base = kind.removesuffix("-sync-api")
    async with database(base, tmp_path) as where:
        created: list[Any] = []

        @checkpointer_test(name=f"cadenza-{kind}")
        async def factory() -> AsyncGenerator[Any, None]:
            if kind == "sqlite-sync-api":
                with SyncSqliteSaver.from_conn_string(where) as s:
                    created.append(s)
                    yield s
            elif kind == "postgres-sync-api":
                with SyncPostgresSaver.from_conn_string(where) as p:
                    created.append(p)
                    yield p
            else:
                async with saver(kind, where) as any_saver:
                    created.append(any_saver)
                    yield any_saver

        report = await validate(factory)

    detected = DetectedCapabilities.from_instance(created[0])
    assert detected.missing == frozenset(), f"not implemented: {sorted(detected.missing)}"
    failures = {
        name: result.failures
        for name, result in report.results.items()
        if not (result.detected and result.passed)
    }
    assert not failures, f"{kind}: {failures}"
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    assert report.conformance_level() == "FULL"
