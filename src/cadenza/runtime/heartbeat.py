"""An engine's one background task while it executes runs: it renews their leases every third
of a lease (by the engine's clock), and looks for commands sent to them in between (polling
the store: waiting for another process, not for a time; less often where hints arrive)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from cadenza.runtime.commands import Inbox
from cadenza.runtime.held import HeldRuns
from cadenza.runtime.leases import LeaseKeeper

_log = structlog.get_logger("cadenza.engine")


class Heartbeat:
    """Renews the leases of the runs in flight (``held``) and applies the commands sent to
    them (``inbox``), from the first run it executes until the engine closes."""

    #: Seconds between looks for commands to runs in flight (stores without hints).
    command_poll: float = 0.5

    def __init__(self, held: HeldRuns, leases: LeaseKeeper, inbox: Inbox) -> None:
        self.held = held
        self.leases = leases
        self.inbox = inbox
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Beat from now on (and listen for the store's hints, where it sends them)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat())
        self.inbox.listen()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.inbox.stop()

    async def _beat(self) -> None:
        clock = self.leases.clock
        renew_every = self.leases.lease_seconds / 3
        poll_every = renew_every if self.inbox.hints_live else min(renew_every, self.command_poll)
        last_renewal = clock.monotonic()
        while True:
            await asyncio.sleep(min(poll_every, renew_every))
            try:
                if clock.monotonic() - last_renewal >= renew_every * 0.95:
                    last_renewal = clock.monotonic()
                    await self.leases.renew()
                if len(self.held) and not self.inbox.busy:
                    self.inbox.chore(self.inbox.apply_running(self.held.ids()))
            except Exception:  # the heartbeat must outlive any one bad beat
                _log.exception("heartbeat_failed")
