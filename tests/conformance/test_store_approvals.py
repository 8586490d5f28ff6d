"""The table of pending approvals (``Store.pending_approvals``), checked against every store
from the events alone: which events open, change and close a request, that the table moves
in the transaction of its events, and the listing's filter, order and pages. The engine's
workflows over the same stores are in ``test_approval_listing.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from cadenza.core.errors import ConflictError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.store._approvals import fold, stored_difference
from cadenza.store.base import LeaseLost, PendingApproval, RunRecord, Store

if TYPE_CHECKING:
    from conftest import StoreHarness  # tests/conformance/conftest.py

S = WorkflowStatus
E = EventType
T0 = 1_700_000_000.0


class Log:
    """Builds one run's events in order, as the engine writes them."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = RunId(run_id)
        self.seq = 1  # the run_created event that ``create`` writes
        self.status = S.INITIALIZING

    def event(self, type: EventType, path: str = "", ts: float = T0, **data: Any) -> Event:
        self.seq += 1
        return Event(self.run_id, self.seq, type, path, data=data, ts=ts)

    def moved(self, to: WorkflowStatus) -> Event:
        event = self.event(E.STATUS, **{"from": str(self.status), "to": str(to)})
        self.status = to
        return event

    async def create(self, *events: Event, workflow: str = "wf") -> None:
        data = {"workflow": workflow, "version": "v1", "input": {}}
        created = Event(self.run_id, 1, E.RUN_CREATED, data=data, ts=T0)
        record = RunRecord(self.run_id, workflow, "v1", status=self.status)
        await self.store.create_run(record, [created, *events])

    async def append(self, *events: Event, epoch: int | None = None) -> None:
        status = self.status if any(e.type is E.STATUS for e in events) else None
        await self.store.append(self.run_id, list(events), status=status, epoch=epoch)

    def request(
        self,
        path: str = "review",
        approvers: tuple[str, ...] | list[str] = ("officer",),
        ts: float = T0,
        **data: Any,
    ) -> Event:
        fields = {"quorum": 1, "summary": "check it", "show": {"amount": 5}, "deadline": None}
        fields.update(data)
        return self.event(E.APPROVAL_REQUESTED, path, ts, approvers=list(approvers), **fields)

    async def running(self) -> Log:
        """Created and RUNNING."""
        await self.create(self.moved(S.RUNNING))
        return self

    async def waits(self, *requests: Event) -> None:
        """The requests, then WAITING_APPROVAL."""
        await self.append(*requests, self.moved(S.WAITING_APPROVAL))

    def decision(self, path: str, actor: str, approve: bool = True) -> Event:
        return self.event(E.APPROVAL_DECISION, path, actor=actor, approve=approve, comment="")


async def listed(store: Store, **kw: Any) -> list[tuple[str, str]]:
    return [(p.run_id, p.step) for p in await store.pending_approvals(**kw)]


async def matches_its_log(store: Store, run_id: RunId) -> None:
    """The run's rows are the fold of its log (what ``audit verify`` checks)."""
    stored = await store.read_stored(run_id)
    assert stored_difference(stored.approvals, await store.read_events(run_id)) is None


# -- what opens, changes and closes a request ---------------------------------------------------


async def test_a_request_is_listed_while_its_run_waits(store: Store) -> None:
    log = Log(store, "r1")
    await log.create(log.moved(S.RUNNING))
    await log.append(log.request(deadline=T0 + 60, ts=T0 + 1))
    assert await store.pending_approvals() == [], "the run does not wait yet"
    await log.append(log.moved(S.WAITING_APPROVAL))
    assert await store.pending_approvals() == [
        PendingApproval(
            run_id=RunId("r1"),
            workflow="wf",
            step="review",
            approvers=("officer",),
            quorum=1,
            approved_by=(),
            summary="check it",
            show={"amount": 5},
            since=T0 + 1,
            deadline=T0 + 60,
        )
    ]
    await matches_its_log(store, log.run_id)


async def test_approvals_below_the_quorum_are_listed_and_the_quorum_closes_it(
    store: Store,
) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request(quorum=2))
    await log.append(log.moved(S.RUNNING), log.decision("review", "olivia"))
    await log.append(log.moved(S.WAITING_APPROVAL))
    (pending,) = await store.pending_approvals()
    assert pending.approved_by == ("olivia",) and pending.quorum == 2
    await matches_its_log(store, log.run_id)
    await log.append(log.moved(S.RUNNING), log.decision("review", "omar"))
    await log.append(log.moved(S.WAITING_APPROVAL))
    assert await store.pending_approvals() == []
    await matches_its_log(store, log.run_id)


async def test_a_rejection_closes_the_request_at_once(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request(quorum=3))
    await log.append(log.decision("review", "olivia"), log.decision("review", "omar", False))
    assert await store.pending_approvals() == []
    assert (await store.read_stored(log.run_id)).approvals == []
    await matches_its_log(store, log.run_id)


@pytest.mark.parametrize("end", [S.CANCELLED, S.FAILED])
async def test_a_run_that_ends_while_waiting_leaves_nothing_pending(
    store: Store, end: WorkflowStatus
) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request("a"), log.request("b", ts=T0 + 1))
    assert len(await store.pending_approvals()) == 2
    await log.append(log.moved(end))
    assert await store.pending_approvals() == []
    assert (await store.read_stored(log.run_id)).approvals == []


async def test_an_escalation_hands_the_request_to_other_approvers(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request(approvers=("officer",), deadline=T0 + 60))
    running = log.moved(S.RUNNING)
    escalated = log.event(
        E.APPROVAL_ESCALATED, "review", approvers=["lead", "lead"], deadline=T0 + 120
    )
    await log.append(running, escalated, log.moved(S.WAITING_APPROVAL))
    assert await listed(store, approvers=["officer"]) == []
    (pending,) = await store.pending_approvals(approvers=["lead"])
    assert pending.approvers == ("lead", "lead") and pending.deadline == T0 + 120
    assert pending.since == T0, "the request's age is kept"
    await matches_its_log(store, log.run_id)


async def test_a_timeout_decision_counts_like_any_other(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request())
    running = log.moved(S.RUNNING)
    timeout = log.event(
        E.APPROVAL_DECISION, "review", actor="system:timeout", approve=False, comment="late"
    )
    await log.append(running, timeout)
    assert (await store.read_stored(log.run_id)).approvals == []


async def test_a_copied_log_opens_its_requests_in_the_new_run(store: Store) -> None:
    """A re-drive or fork is ``create_run`` with a copy of the source's events."""
    log = Log(store, "copy")
    log.status = S.RUNNING
    running = log.moved(S.RUNNING)
    await log.create(running, log.request("a"), log.request("b", ts=T0 + 1))
    await log.append(log.decision("b", "olivia"), log.moved(S.WAITING_APPROVAL))
    assert await listed(store) == [("copy", "a")]
    await matches_its_log(store, log.run_id)


async def test_a_request_made_again_replaces_the_old_one(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request(quorum=2))
    await log.append(log.decision("review", "olivia"))
    await log.append(log.request(approvers=("lead",), ts=T0 + 5, quorum=2))
    rows = (await store.read_stored(log.run_id)).approvals
    assert len(rows) == 1 and rows[0].since == T0 + 5
    (pending,) = await store.pending_approvals(approvers=["lead"])
    assert pending.approved_by == () and await listed(store, approvers=["officer"]) == []
    await matches_its_log(store, log.run_id)


# -- the same transaction as the events ---------------------------------------------------------


async def test_a_refused_append_changes_no_request(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request())
    epoch = await store.claim(log.run_id, "w1", lease_until=T0 * 2)
    assert epoch is not None
    stale = log.decision("review", "olivia")
    with pytest.raises(LeaseLost):
        await store.append(log.run_id, [stale], epoch=epoch + 1)
    taken = Event(log.run_id, 2, E.APPROVAL_DECISION, "review", data={"approve": False})
    with pytest.raises(ConflictError):
        await store.append(log.run_id, [taken])
    assert await listed(store) == [("r1", "review")]
    log.seq -= 1
    await log.append(log.decision("review", "olivia"), epoch=epoch)
    assert await store.pending_approvals() == []


async def test_requests_survive_reopening(store_harness: StoreHarness) -> None:
    if not store_harness.durable:
        pytest.skip("this store keeps nothing across instances")
    store = await store_harness.start()
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request(quorum=2))
    await log.append(log.decision("review", "olivia"))
    store = await store_harness.reopen()
    (pending,) = await store.pending_approvals(approvers=["officer"])
    assert pending.approved_by == ("olivia",)
    await store_harness.stop()


# -- listing: filter, order, pages --------------------------------------------------------------


async def test_listing_is_oldest_first_in_a_stable_order_and_pages_through(store: Store) -> None:
    expected: list[tuple[str, str]] = []
    for i, run in enumerate(["rb", "ra", "rc"]):
        log = await Log(store, run).running()
        since = T0 + (i % 2)  # ties on since: then by run id, then step
        await log.waits(
            log.request("z", ts=since, approvers=["officer"]),
            log.request("é", ts=since, approvers=["lead", "officer"]),
        )
        expected += [(run, "z"), (run, "é")]
    expected.sort(key=lambda e: (T0 + (["rb", "ra", "rc"].index(e[0]) % 2), e[0], e[1]))
    assert await listed(store) == expected
    assert await listed(store, limit=0) == []
    pages: list[tuple[str, str]] = []
    after = None
    while True:
        page = await store.pending_approvals(limit=4, after=after)
        if not page:
            break
        pages += [(p.run_id, p.step) for p in page]
        after = page[-1].cursor
    assert pages == expected


async def test_listing_for_names_finds_each_request_once(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(
        log.request("both", approvers=["olivia", "officer"]),
        log.request("role", approvers=["officer"], ts=T0 + 1),
        log.request("other", approvers=["lead"], ts=T0 + 2),
    )
    names = ["olivia", "officer"]
    assert await listed(store, approvers=names) == [("r1", "both"), ("r1", "role")]
    assert await listed(store, approvers=names, limit=1) == [("r1", "both")]
    first = (await store.pending_approvals(approvers=names, limit=1))[0]
    assert await listed(store, approvers=names, after=first.cursor) == [("r1", "role")]
    assert await listed(store, approvers=["nobody"]) == []
    assert await listed(store, approvers=[]) == []


async def test_the_table_is_the_fold_of_the_log(store: Store) -> None:
    log = Log(store, "r1")
    await log.running()
    await log.waits(log.request("a", quorum=2), log.request("b", ts=T0 + 1))
    await log.append(log.decision("a", "olivia"), log.decision("b", "omar", approve=False))
    events = await store.read_events(log.run_id)
    (row,) = (await store.read_stored(log.run_id)).approvals
    assert row.path == "a" and list(fold(events)) == ["a"]
    await matches_its_log(store, log.run_id)


async def test_a_page_reads_past_the_requests_of_runs_that_do_not_wait(store: Store) -> None:
    for i in range(5):  # the oldest requests, of runs that do not wait (yet)
        log = await Log(store, f"busy{i}").running()
        await log.append(log.request(ts=T0 + i, approvers=["officer", "lead"]))
    for i in range(3):
        log = await Log(store, f"wait{i}").running()
        await log.waits(log.request(ts=T0 + 10 + i, approvers=["officer", "lead"]))
    assert await listed(store, limit=2) == [("wait0", "review"), ("wait1", "review")]
    names = ["officer", "lead"]
    assert await listed(store, approvers=names, limit=2) == [
        ("wait0", "review"),
        ("wait1", "review"),
    ]
    first = (await store.pending_approvals(approvers=names, limit=1))[0]
    assert await listed(store, approvers=names, after=first.cursor) == [
        ("wait1", "review"),
        ("wait2", "review"),
    ]
