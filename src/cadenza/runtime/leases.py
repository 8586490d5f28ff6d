"""How an engine holds runs in the store: claiming one (to resume or control it), every due
one (a worker's poll, or the runs it suspended whose time has come), holding one for a moment
to write to its log, renewing the leases of the runs in flight (and noticing one that another
worker took), and releasing each run with the time it next needs a worker."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from cadenza.core.clock import Clock
from cadenza.core.errors import CadenzaError, StoreError, StoreUnavailable
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.graph.ir import WorkflowIR
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.outages import Outage
from cadenza.runtime.ownership import next_wake, owner_is_dead
from cadenza.runtime.progress import Progress
from cadenza.store.base import DUE_NOW, RunRecord, Store

_log = structlog.get_logger("cadenza.engine")


class RunHeld(CadenzaError):
    """Another live engine holds the run's lease."""


@dataclass(slots=True)
class Hold:
    """A short hold on a run (see :meth:`LeaseKeeper.holding`)."""

    epoch: int
    wake_at: float | None


class LeaseKeeper:
    """The leases of one engine (``owner``) on runs in ``store``: each lasts
    ``lease_seconds`` of ``clock`` time unless renewed (see
    :class:`~cadenza.runtime.heartbeat.Heartbeat`) for the runs in flight (``held``)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        lease_seconds: float,
        clock: Clock,
        outage: Outage,
        held: HeldRuns,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.outage = outage
        self.held = held
        self._dead_checked = float("-inf")  # when dead local owners were last looked for

    def fresh(self, ir: WorkflowIR) -> dict[str, Any]:
        """The fields of a run record that a new run, held by this engine, starts with (due,
        so that it is taken over if this engine dies)."""
        now = self.clock.now()
        return {
            "status": WorkflowStatus.RUNNING,
            "created_at": now,
            "updated_at": now,
            "deadline": now + ir.config.timeout if ir.config.timeout else None,
            "owner": self.owner,
            "lease_until": now + self.lease_seconds,
            "epoch": 1,
            "wake_at": now,
        }

    # -- claiming ------------------------------------------------------------------------------

    async def claim(self, record: RunRecord) -> int:
        """Take the run's lease; returns its epoch, or raises :class:`RunHeld`."""
        epoch = await self.store.claim(
            record.run_id,
            self.owner,
            lease_until=self.clock.now() + self.lease_seconds,
            steal=owner_is_dead(record.owner),
        )
        if epoch is None:
            raise RunHeld(
                f"run {record.run_id} is being executed by {record.owner} (lease until "
                f"{time.strftime('%H:%M:%S', time.localtime(record.lease_until or 0))}); "
                "it will be resumable when that lease expires"
            )
        return epoch

    @contextlib.asynccontextmanager
    async def holding(self, run_id: RunId) -> AsyncIterator[Hold | None]:
        """Hold a run nobody executes for a moment (to write to its log): yields the hold
        (its lease epoch, and when the run is due once released: as before unless the caller
        changes it), or ``None`` when another live engine holds the run."""
        record = await self.store.get_run(run_id)
        epoch = await self.store.claim(
            run_id,
            self.owner,
            lease_until=self.clock.now() + self.lease_seconds,
            steal=owner_is_dead(record.owner),
        )
        if epoch is None:
            yield None
            return
        hold = Hold(epoch, record.wake_at)
        try:
            yield hold
        finally:
            with contextlib.suppress(StoreError):
                await self.store.release(run_id, self.owner, wake_at=hold.wake_at)

    async def claim_due(
        self,
        *,
        limit: int,
        workflows: Sequence[tuple[str, str]] | None,
        queues: Sequence[str] | None,
        run_ids: Sequence[RunId] | None = None,
    ) -> list[RunRecord]:
        """Claim due runs (of ``run_ids`` only, if given) that no live engine holds; returns
        those not in flight here (one that is had its lease lapse while the store was away:
        it is kept, see :meth:`keep`)."""
        claimed = await self.store.claim_due(
            self.owner,
            lease_until=self.clock.now() + self.lease_seconds,
            limit=limit,
            workflows=workflows,
            queues=queues,
            dead_owners=await self.dead_owners(),
            run_ids=run_ids,
        )
        held = self.held
        if any(r.run_id in held for r in claimed):
            for record in claimed:
                if record.run_id in held:
                    self.keep(record)
            claimed = [r for r in claimed if r.run_id not in held]
        return claimed

    def keep(self, record: RunRecord) -> None:
        """Go on executing a run this engine just claimed again (its lease had lapsed, the
        store being away): under the new epoch, so its next appends are not fenced off."""
        held = self.held.get(record.run_id)
        if held is None:
            return
        held.epoch = record.epoch
        held.renewing = True
        _log.info("lease_reclaimed", run_id=record.run_id, epoch=record.epoch)

    async def dead_owners(self) -> list[str]:
        """Owners of held runs that are processes of this host that died (their runs need
        not wait for their leases to expire); looked up at most once per lease period."""
        now = self.clock.monotonic()
        if now - self._dead_checked < self.lease_seconds:
            return []
        self._dead_checked = now
        return [o for o in await self.store.owners() if o != self.owner and owner_is_dead(o)]

    # -- releasing -----------------------------------------------------------------------------

    async def release(self, run_id: RunId, *, wake_at: float | None = DUE_NOW) -> None:
        """Hand a run back to the store with the time it next needs a worker. While the store
        is away this is retried for as long as the lease would last (unless the engine is
        closing); a release that never lands leaves the run to be claimed when it lapses."""
        held = self.held.get(run_id)
        if held is not None:
            held.renewing = False

        async def release() -> None:
            await self.store.release(run_id, self.owner, wake_at=wake_at)

        with contextlib.suppress(StoreError, TimeoutError):
            if self.held.closing:
                await release()
                return
            async with self.clock.timeout(self.lease_seconds):
                await self.outage.retry("releasing a run", release)

    async def hand_back(
        self, run_id: RunId, progress: Progress, *, suspended_at: int | None = None
    ) -> None:
        """Release a run that stopped executing, due when it next needs a worker by itself
        (see :func:`~cadenza.runtime.ownership.next_wake`)."""
        now = self.clock.now()
        await self.release(run_id, wake_at=next_wake(progress, now, suspended_at=suspended_at))

    # -- renewing ------------------------------------------------------------------------------

    async def renew(self) -> None:
        """Extend the leases of the runs in flight; abandon those another worker took."""
        leases = {h.run_id: h.epoch for h in self.held if h.renewing}
        if not leases:
            return
        try:
            still = await self.store.renew(
                self.owner, leases, lease_until=self.clock.now() + self.lease_seconds
            )
        except StoreUnavailable as exc:  # renewed at the next beat; fencing guards meanwhile
            self.outage.failed(exc, "renewing leases")
            return
        except StoreError as exc:
            _log.warning("lease_renewal_failed", runs=len(leases), error=str(exc))
            return
        self.outage.back()
        for run_id, epoch in leases.items():
            held = self.held.get(run_id)
            if run_id in still or held is None or not held.renewing or held.epoch != epoch:
                continue
            _log.warning("lease_lost", run_id=run_id, epoch=epoch)
            held.lost = True
            held.task.cancel()
