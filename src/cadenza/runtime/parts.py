"""The collaborators an engine is made of, and how they are put together: each is given what
it depends on, explicitly, in an order without cycles (the one way back, from the runs that
sleep to the intake that wakes them, is a callback)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cadenza.core.ids import RunId
from cadenza.identity import Directory
from cadenza.runtime.alarms import Sleepers
from cadenza.runtime.approvals import Approvals
from cadenza.runtime.commands import Inbox
from cadenza.runtime.control import Control
from cadenza.runtime.definitions import Definitions
from cadenza.runtime.driver import RunDriver, RunSettings
from cadenza.runtime.guard import Guard
from cadenza.runtime.heartbeat import Heartbeat
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.intake import Intake
from cadenza.runtime.launch import Launcher
from cadenza.runtime.leases import LeaseKeeper
from cadenza.runtime.results import Results
from cadenza.runtime.wakeups import Wakeups
from cadenza.store.base import Store


@dataclass(frozen=True, slots=True)
class Parts:
    """An engine's collaborators (see each class for what it owns)."""

    definitions: Definitions
    held: HeldRuns
    wakeups: Wakeups
    leases: LeaseKeeper
    inbox: Inbox
    heartbeat: Heartbeat
    sleepers: Sleepers
    driver: RunDriver
    intake: Intake
    results: Results
    guard: Guard
    launcher: Launcher
    approvals: Approvals
    control: Control


def assemble(
    store: Store,
    owner: str,
    lease_seconds: float,
    settings: RunSettings,
    directory: Callable[[], Directory],
) -> Parts:
    """The collaborators of an engine that holds runs in ``store`` as ``owner``."""
    clock = settings.clock
    definitions = Definitions(store)
    held = HeldRuns()
    wakeups = Wakeups()
    leases = LeaseKeeper(store, owner, lease_seconds, clock, settings.outage, held)
    inbox = Inbox(store, held, leases, settings.outage, wakeups)
    heartbeat = Heartbeat(held, leases, inbox)

    async def wake(run_ids: list[RunId]) -> set[RunId]:
        """Claim and continue suspended runs that came due."""
        problems, started = await intake.pick_up(
            limit=len(run_ids), workflows=None, queues=None, run_ids=run_ids
        )
        return set(started).union(problems)

    sleepers = Sleepers(store, leases, held, wakeups, wake, clock)
    driver = RunDriver(settings, store, held, leases, heartbeat, sleepers, wakeups)
    intake = Intake(store, definitions, leases, inbox, driver)
    results = Results(store, held, sleepers, definitions)
    guard = Guard(store, definitions, directory, held, leases, settings)
    return Parts(
        definitions=definitions,
        held=held,
        wakeups=wakeups,
        leases=leases,
        inbox=inbox,
        heartbeat=heartbeat,
        sleepers=sleepers,
        driver=driver,
        intake=intake,
        results=results,
        guard=guard,
        launcher=Launcher(store, definitions, directory, leases, driver),
        approvals=Approvals(store, directory, leases, intake, driver, guard, results),
        control=Control(
            store, definitions, held, leases, intake, inbox, driver, guard, results, sleepers
        ),
    )
