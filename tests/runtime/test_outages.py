"""A store that is away for a while: the engine keeps its runs, retries each append until the
store is back (settling appends that were committed though their caller saw an error), logs
one warning per outage, and a real conflict is still a conflict."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

import pytest
import structlog
from structlog.testing import capture_logs

from cadenza import Engine, MemoryStore, Workflow, WorkflowStatus
from cadenza.core.errors import ConflictError, StoreUnavailable
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.runtime.outages import Outage
from cadenza.runtime.ownership import FencedStore


@pytest.fixture(autouse=True)
def every_level() -> Iterator[None]:
    """Let every level through to the captured logs, whatever level an earlier test (the
    command line's) configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


class State(TypedDict, total=False):
    n: int


@pytest.fixture(autouse=True)
def _every_level() -> Iterator[None]:
    """Earlier tests may have configured structlog to drop warnings; these look at them."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**old)


class FlakyStore(MemoryStore):
    """A memory store whose appends fail with :class:`StoreUnavailable` while ``away`` is
    set; ``commit_anyway`` makes a failing append commit first (the connection dropped after
    the commit was sent), as a real database may."""

    def __init__(self) -> None:
        super().__init__()
        self.away = False
        self.commit_anyway = False
        self.failures = 0
        self.back = asyncio.Event()

    async def append(self, run_id: RunId, events: Sequence[Event], **kw: Any) -> None:
        if self.away:
            self.failures += 1
            if self.commit_anyway:
                await super().append(run_id, events, **kw)
            raise StoreUnavailable("cannot reach the store: connection refused")
        await super().append(run_id, events, **kw)

    async def read_events(self, run_id: RunId, *, after_seq: int = 0) -> list[Event]:
        if self.away:
            raise StoreUnavailable("cannot reach the store: connection refused")
        return await super().read_events(run_id, after_seq=after_seq)


def chain(store: FlakyStore, steps: int = 5) -> Workflow:
    wf = Workflow("flaky_chain", state=State)

    def make(i: int) -> Any:
        async def step(state: State) -> State:
            if i == 2 and not store.back.is_set():
                store.away = True  # the store goes away while this step runs

                async def come_back() -> None:
                    while store.failures < 6:  # several runs and appends have failed
                        await asyncio.sleep(0.005)
                    store.away = False
                    store.back.set()

                asyncio.get_running_loop().create_task(come_back())
            return {"n": state.get("n", 0) + 1}

        step.__name__ = f"s{i}"
        return step

    for i in range(steps):
        wf.task(make(i))
    return wf


@pytest.mark.parametrize("commit_anyway", [False, True], ids=["lost", "committed"])
async def test_runs_ride_out_an_outage_and_finish_once(commit_anyway: bool) -> None:
    store = FlakyStore()
    store.commit_anyway = commit_anyway
    wf = chain(store)
    with capture_logs() as logs:
        async with Engine(store) as engine:
            run_ids = [await engine.start(wf, {}) for _ in range(20)]
            results = [await engine.wait(rid) for rid in run_ids]
    assert store.failures >= 6
    for result in results:
        assert result.status is WorkflowStatus.COMPLETED, result.error
        assert result.state["n"] == 5
        events = await store.read_events(result.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        done = Counter(e.path for e in events if e.type is EventType.STEP_COMPLETED)
        assert set(done.values()) == {1}, done
    warnings = [entry for entry in logs if entry["event"] == "store_unavailable"]
    assert len(warnings) == 1, warnings  # one per outage, not one per run or per try
    assert [e for e in logs if e["event"] == "store_available_again"]
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]


async def test_a_conflict_without_an_outage_is_still_a_conflict() -> None:
    store = MemoryStore()
    async with Engine(store) as engine:
        wf = Workflow("one", state=State)
        wf.task(lambda state: {"n": 1}, name="only")
        result = await engine.run(wf, {})
    events = await store.read_events(result.run_id)
    fenced = FencedStore(store, (await store.get_run(result.run_id)).epoch, Outage())
    stray = Event(result.run_id, len(events) + 2, EventType.SIGNAL, data={"name": "x"})
    with pytest.raises(ConflictError):
        await fenced.append(result.run_id, (stray,))  # seq skips one: not this run's next


async def test_another_writers_events_are_not_taken_for_ours() -> None:
    store = FlakyStore()
    async with Engine(store) as engine:
        wf = Workflow("one", state=State)
        wf.task(lambda state: {"n": 1}, name="only")
        result = await engine.run(wf, {})
    run_id = result.run_id
    head = len(await store.read_events(run_id))
    theirs = Event(run_id, head + 1, EventType.SIGNAL, data={"name": "theirs"})
    ours = Event(run_id, head + 1, EventType.SIGNAL, data={"name": "ours"}, ts=theirs.ts + 1)
    fenced = FencedStore(store, (await store.get_run(run_id)).epoch, Outage())
    store.away, store.commit_anyway = True, False

    async def the_other_writer_then_back() -> None:
        while store.failures < 2:
            await asyncio.sleep(0.001)
        await MemoryStore.append(store, run_id, (theirs,))  # while we could not reach it
        store.away = False

    other = asyncio.get_running_loop().create_task(the_other_writer_then_back())
    with pytest.raises(ConflictError, match="another writer"):
        await fenced.append(run_id, (ours,))
    await other
