"""``Store.resolve_run_id``: a run named by its id or by a unique start of it, on every store."""

from __future__ import annotations

import pytest

from cadenza.core.errors import RunNotFound, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.store.base import RunRecord, Store
from cadenza.store.run_ids import CANDIDATES, AmbiguousRunId

IDS = ("3f2a0001", "3f2b0002", "3f2b0003", "a", "ab", "50%_x", "[*]?", "é1", "é2")


@pytest.fixture
async def runs(store: Store) -> Store:
    for run_id in IDS:
        record = RunRecord(run_id=RunId(run_id), workflow="wf", version="v1")
        await store.create_run(record, [Event(RunId(run_id), 1, EventType.RUN_CREATED)])
    return store


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ("3f2a0001", "3f2a0001"),  # the whole id
        ("3f2a", "3f2a0001"),  # a unique start
        ("3f2b0003", "3f2b0003"),
        ("a", "a"),  # an id that starts another is itself, not ambiguous
        ("ab", "ab"),
        ("50%", "50%_x"),  # LIKE and GLOB wildcards are plain characters
        ("[*", "[*]?"),
        ("é2", "é2"),
    ],
)
async def test_an_id_or_a_unique_start_names_the_run(runs: Store, given: str, found: str) -> None:
    assert await runs.resolve_run_id(given) == found


async def test_a_start_shared_by_several_runs_is_ambiguous_and_names_them(runs: Store) -> None:
    with pytest.raises(AmbiguousRunId) as raised:
        await runs.resolve_run_id("3f2b")
    assert raised.value.candidates == ["3f2b0002", "3f2b0003"]
    assert "'3f2b' is ambiguous" in str(raised.value) and "3f2b0002, 3f2b0003" in str(raised.value)
    with pytest.raises(AmbiguousRunId):
        await runs.resolve_run_id("é")


@pytest.mark.parametrize("given", ["3f2c", "3f2a00011", "_", "%", "A", "b"])
async def test_no_match_is_run_not_found(runs: Store, given: str) -> None:
    with pytest.raises(RunNotFound, match="no run with id"):
        await runs.resolve_run_id(given)


async def test_an_empty_prefix_is_refused(runs: Store) -> None:
    with pytest.raises(StoreError, match="cannot be empty"):
        await runs.resolve_run_id("")


async def test_many_candidates_are_cut_short(store: Store) -> None:
    for i in range(CANDIDATES + 4):
        run_id = RunId(f"dup{i:02d}")
        record = RunRecord(run_id=run_id, workflow="wf", version="v1")
        await store.create_run(record, [Event(run_id, 1, EventType.RUN_CREATED)])
    with pytest.raises(AmbiguousRunId) as raised:
        await store.resolve_run_id("dup")
    assert len(raised.value.candidates) == CANDIDATES - 1
    assert str(raised.value).count("dup") == CANDIDATES and ", ...;" in str(raised.value)
