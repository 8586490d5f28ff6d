"""How an engine holds runs: claiming one (to resume or control it), every due one (a
worker's poll) or the ones it suspended whose time has come (its alarms), renewing the leases
while it executes them, noticing a lease another worker took, and releasing each run with the
time it next needs a worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from cadenza.core.errors import CadenzaError, RunNotFound, StoreError, StoreUnavailable
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.runtime.alarms import RETRY_AFTER
from cadenza.runtime.ownership import approval_due, next_wake, owner_is_dead
from cadenza.store.base import DUE_NOW, Command, Hint, Hints, RunRecord

if TYPE_CHECKING:
    from cadenza.graph.builder import Workflow
    from cadenza.graph.ir import WorkflowIR
    from cadenza.runtime.engine import Engine
    from cadenza.runtime.run import RunExecution

_log = structlog.get_logger("cadenza.engine")


class RunHeld(CadenzaError):
    """Another live engine holds the run's lease."""


@dataclass(slots=True)
class Hold:
    """A short hold on a run (see ``_holding``)."""

    epoch: int
    wake_at: float | None


#: Seconds before a run this engine could not load (unknown or changed definition) is due again.
UNRESOLVED_BACKOFF = 5.0


class LeasesMixin:
    """Part of :class:`Engine`: claiming, renewing and releasing runs."""

    async def _take(
        self: Engine, record: RunRecord, workflow: Workflow | WorkflowIR | None = None
    ) -> RunExecution:
        """Claim a run for this engine and load it, ready to continue."""
        ir = self._resolve(record, workflow)
        epoch = await self.store.claim(
            record.run_id,
            self.owner,
            lease_until=time.time() + self.lease_seconds,
            steal=owner_is_dead(record.owner),
        )
        if epoch is None:
            raise RunHeld(
                f"run {record.run_id} is being executed by {record.owner} (lease until "
                f"{time.strftime('%H:%M:%S', time.localtime(record.lease_until or 0))}); "
                "it will be resumable when that lease expires"
            )
        self._epochs[record.run_id] = epoch
        try:
            return self._execution(ir, record.run_id, await self._load(record, ir))
        except BaseException:
            await self._release(record.run_id, wake_at=record.wake_at)
            raise

    @contextlib.asynccontextmanager
    async def _holding(self: Engine, run_id: RunId) -> AsyncIterator[Hold | None]:
        """Hold a run nobody executes for a moment (to write to its log): yields the hold
        (its lease epoch, and when the run is due once released: as before unless the caller
        changes it), or ``None`` when another live engine holds the run."""
        record = await self.store.get_run(run_id)
        epoch = await self.store.claim(
            run_id,
            self.owner,
            lease_until=time.time() + self.lease_seconds,
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

    async def _pick_up(
        self: Engine,
        *,
        limit: int,
        workflows: Sequence[tuple[str, str]] | None,
        queues: Sequence[str] | None,
        run_ids: Sequence[RunId] | None = None,
    ) -> tuple[dict[RunId, str], list[RunId]]:
        """Claim due runs (of ``run_ids`` only, if given) and start them; returns the problems
        and the runs started."""
        await self.open()
        claimed = await self.store.claim_due(
            self.owner,
            lease_until=time.time() + self.lease_seconds,
            limit=limit,
            workflows=workflows,
            queues=queues,
            dead_owners=await self._dead_owners(),
            run_ids=run_ids,
        )
        problems: dict[RunId, str] = {}
        mine = [r for r in claimed if r.run_id in self._active]
        if mine:  # executing here: their leases lapsed while the store was away; keep them
            for record in mine:
                self._keep(record)
            claimed = [r for r in claimed if r.run_id not in self._active]
        if not claimed:
            return problems, []
        commands: dict[RunId, list[Command]] = {r.run_id: [] for r in claimed}
        for command in await self.store.pending_commands(list(commands)):
            commands[command.run_id].append(command)
        outcomes = await asyncio.gather(
            *(self._start_claimed(r, commands[r.run_id]) for r in claimed)
        )
        started = []
        for record, outcome in zip(claimed, outcomes, strict=True):
            if outcome is True:
                started.append(record.run_id)
            elif isinstance(outcome, str):
                problems[record.run_id] = outcome
        return problems, started

    def _keep(self: Engine, record: RunRecord) -> None:
        """Go on executing a run this engine just claimed again (its lease had lapsed, the
        store being away): under the new epoch, so its next appends are not fenced off."""
        execution = self._executions.get(record.run_id)
        if execution is None:
            return
        self._epochs[record.run_id] = record.epoch
        execution.store.epoch = record.epoch
        _log.info("lease_reclaimed", run_id=record.run_id, epoch=record.epoch)

    async def _ring(self: Engine, due: list[RunId]) -> None:
        """Wake runs this engine suspended whose time has come (its alarms ring): claim and
        continue them here. A worker's engine only tells its worker, which claims every due
        run itself (so it looks at once, not at its next poll). A run that could not be
        claimed is followed: looked at again when it may be due, until it is woken here or
        something else moves it on."""
        if not self._wakes_own_runs:
            self._wake_workers()
            return
        asleep = [run_id for run_id in due if run_id not in self._active]
        problems, started = await self._pick_up(
            limit=len(asleep), workflows=None, queues=None, run_ids=asleep
        )
        done = set(started).union(problems)
        for run_id in asleep:
            if run_id not in done:
                await self._follow_asleep(run_id)

    async def _follow_asleep(self: Engine, run_id: RunId) -> None:
        """Set the next alarm of a suspended run that could not be claimed when it rang
        (another engine holds it, or it is due later than this engine knew), if it may still
        need waking: not if it ended, or only an outside event can move it on."""
        try:
            record = await self.store.get_run(run_id)
        except RunNotFound:
            return
        if record.status.terminal or record.wake_at is None:
            return
        now = time.time()
        if record.owner not in (None, self.owner) and (record.lease_until or 0) > now:
            self._alarms.set(run_id, record.lease_until or now)  # held: look when it may end
        else:
            self._alarms.set(run_id, max(record.wake_at, now + RETRY_AFTER))

    async def _dead_owners(self: Engine) -> list[str]:
        """Owners of held runs that are processes of this host that died (their runs need
        not wait for their leases to expire); looked up at most once per lease period."""
        now = time.monotonic()
        if now - self._dead_checked < self.lease_seconds:
            return []
        self._dead_checked = now
        return [o for o in await self.store.owners() if o != self.owner and owner_is_dead(o)]

    async def _start_claimed(self: Engine, record: RunRecord, pending: list[Command]) -> bool | str:
        """Load a run just claimed and start it if it has work to do now; ``True`` if started,
        why not (a string) if it could not be."""
        run_id = record.run_id
        self._epochs[run_id] = record.epoch
        try:
            ir = self._resolve(record, None)
            progress = await self._outage.retry("loading a run", lambda: self._load(record, ir))
            execution = self._execution(ir, run_id, progress)
        except CadenzaError as exc:
            _log.warning("run_not_resumed", run_id=run_id, error=str(exc))
            await self._release(run_id, wake_at=time.time() + UNRESOLVED_BACKOFF)
            return str(exc)
        if not await self._apply_on_claim(execution, pending):
            return False
        progress = execution.progress
        if progress.status is WorkflowStatus.WAITING_APPROVAL and not approval_due(progress):
            await self._release(run_id, wake_at=next_wake(progress))
            return False
        _log.debug("run_claimed", run_id=run_id, workflow=ir.name, epoch=record.epoch)
        self._start_execution(execution, record.deadline)
        return True

    async def _release(self: Engine, run_id: RunId, *, wake_at: float | None = DUE_NOW) -> None:
        """Hand a run back to the store with the time it next needs a worker. While the store
        is away this is retried for as long as the lease would last (unless the engine is
        closing); a release that never lands leaves the run to be claimed when it lapses."""
        self._epochs.pop(run_id, None)  # no longer renewed from here on

        async def release() -> None:
            await self.store.release(run_id, self.owner, wake_at=wake_at)

        with contextlib.suppress(StoreError, TimeoutError):
            if self._closing:
                await release()
                return
            async with asyncio.timeout(self.lease_seconds):
                await self._outage.retry("releasing a run", release)

    def _run_finished(self: Engine, run_id: RunId) -> None:
        self._epochs.pop(run_id, None)
        self._wake_workers()

    # -- background: lease renewal, commands, hints --------------------------------------------

    def _start_background(self: Engine) -> None:
        loop = asyncio.get_running_loop()
        if self._heartbeat is None:
            self._heartbeat = loop.create_task(self._beat())
        if self._hints_task is None and self.use_hints and self._hints is not None:
            self._hints_task = loop.create_task(self._listen(self._hints))

    async def _stop_background(self: Engine) -> None:
        for task in (self._heartbeat, self._hints_task, *self._chores):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._heartbeat = self._hints_task = None

    async def _beat(self: Engine) -> None:
        """Renew the leases of the runs in flight every third of the lease; look for commands
        to them between (less often where the store sends hints)."""
        renew_every = self.lease_seconds / 3
        poll_every = renew_every if self._hints_live else min(renew_every, self.command_poll)
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(min(poll_every, renew_every))
            try:
                if time.monotonic() - last_renewal >= renew_every * 0.95:
                    last_renewal = time.monotonic()
                    await self._renew()
                if self._active and not self._chores:
                    self._chore(self._apply_commands(list(self._active)))
            except Exception:  # the heartbeat must outlive any one bad beat
                _log.exception("heartbeat_failed")

    async def _renew(self: Engine) -> None:
        leases = {rid: self._epochs[rid] for rid in list(self._active) if rid in self._epochs}
        if not leases:
            return
        try:
            held = await self.store.renew(
                self.owner, leases, lease_until=time.time() + self.lease_seconds
            )
        except StoreUnavailable as exc:  # renewed at the next beat; fencing guards meanwhile
            self._outage.failed(exc, "renewing leases")
            return
        except StoreError as exc:
            _log.warning("lease_renewal_failed", runs=len(leases), error=str(exc))
            return
        self._outage.back()
        for run_id, epoch in leases.items():
            task = self._active.get(run_id)
            if run_id in held or task is None or self._epochs.get(run_id) != epoch:
                continue
            _log.warning("lease_lost", run_id=run_id, epoch=epoch)
            self._lost.add(run_id)
            task.cancel()

    async def _listen(self: Engine, store: Hints) -> None:
        try:
            await self._follow(store)
        except Exception:  # polling still finds the work, just later
            _log.exception("hints_failed")
        finally:
            self._hints_live = False

    async def _follow(self: Engine, store: Hints) -> None:
        hint: Hint
        async for hint in store.hints():
            if hint.kind == "ready":
                self._hints_live = True
            elif hint.kind == "command" and hint.run_id in self._active:
                assert hint.run_id is not None
                self._chore(self._apply_commands([hint.run_id]))
            self._wake_workers()

    def _chore(self: Engine, work: Coroutine[Any, Any, None]) -> None:
        """Do ``work`` in the background (kept referenced until it ends)."""
        task = asyncio.get_running_loop().create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)
