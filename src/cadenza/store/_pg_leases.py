"""The PostgreSQL store's leases, commands and hints: claims with ``FOR UPDATE SKIP LOCKED``,
renewals and releases, the command table, and ``LISTEN``/``NOTIFY`` wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from pydantic_core import from_json

from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.store import _pg_sql as q
from cadenza.store._rows import command_json, run_from_row
from cadenza.store.base import DUE_NOW, Command, Hint, RunRecord

log = logging.getLogger("cadenza.store.postgres")

#: Notification payloads: a run became due, or a command waits for the run named after it.
WORK = "work"
COMMAND = "command:"


def _command(row: tuple[Any, ...]) -> Command:
    return Command(
        id=row[0], run_id=RunId(row[1]), kind=row[2], data=from_json(row[3]), actor=row[4],
        created_at=row[5], done_at=row[6], outcome=row[7],
    )  # fmt: skip


class PostgresLeases:
    """Part of :class:`~cadenza.store.postgres.PostgresStore`: leases, commands and hints."""

    dsn: str
    channel: str
    _closing: asyncio.Event

    if TYPE_CHECKING:  # provided by the store

        def _conn(
            self, doing: str
        ) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...

        async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None: ...

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> int | None:
        params = {
            "owner": owner, "lease": lease_until, "run": run_id, "steal": steal, "now": time.time()
        }  # fmt: skip
        async with self._conn(f"claiming run {run_id!r}") as conn:
            row = await (await conn.execute(q.CLAIM, params)).fetchone()
            if row is not None:
                return int(row[0])
            if await (await conn.execute(q.RUN_EXISTS, (run_id,))).fetchone() is None:
                raise RunNotFound(run_id)
            return None

    async def claim_due(
        self,
        owner: str,
        *,
        lease_until: float,
        limit: int,
        workflows: Collection[tuple[str, str]] | None = None,
        queues: Collection[str] | None = None,
        dead_owners: Collection[str] = (),
        run_ids: Collection[RunId] | None = None,
    ) -> list[RunRecord]:
        if limit <= 0 or (workflows is not None and not workflows):
            return []
        if (queues is not None and not queues) or (run_ids is not None and not run_ids):
            return []
        params: dict[str, Any] = {
            "owner": owner, "lease": lease_until, "now": time.time(), "limit": limit,
            "statuses": q.CLAIMABLE_STATUSES, "dead": list(dead_owners),
        }  # fmt: skip
        filters = ""
        if queues is not None:
            filters += q.CLAIM_DUE_QUEUES
            params["queues"] = list(queues)
        if run_ids is not None:
            filters += q.CLAIM_DUE_RUNS
            params["runs"] = list(run_ids)
        if workflows is not None:
            filters += q.CLAIM_DUE_WORKFLOWS
            pairs = list(workflows)
            params["names"] = [name for name, _ in pairs]
            params["versions"] = [version for _, version in pairs]
        async with self._conn("claiming due runs") as conn:
            rows = await (
                await conn.execute(q.CLAIM_DUE.format(filters=filters), params)
            ).fetchall()
        claimed = [run_from_row(row) for row in rows]
        claimed.sort(key=lambda r: r.wake_at or 0.0)
        return claimed

    async def renew(
        self, owner: str, leases: Mapping[RunId, int], *, lease_until: float
    ) -> set[RunId]:
        if not leases:
            return set()
        params = {
            "owner": owner, "lease": lease_until, "runs": list(leases),
            "epochs": list(leases.values()),
        }  # fmt: skip
        async with self._conn("renewing leases") as conn:
            rows = await (await conn.execute(q.RENEW, params)).fetchall()
        return {RunId(row[0]) for row in rows}

    async def release(self, run_id: RunId, owner: str, *, wake_at: float | None = DUE_NOW) -> None:
        async with self._conn(f"releasing run {run_id!r}") as conn, conn.transaction():
            # Lock first: the command check below then sees every command sent before the
            # lock was granted, and a later sender finds the run released and makes it due.
            row = await (await conn.execute(q.LOCK_OWNED, (run_id, owner))).fetchone()
            if row is None:
                if await (await conn.execute(q.RUN_EXISTS, (run_id,))).fetchone() is None:
                    raise RunNotFound(run_id)
                return
            now = time.time()
            if row[0] in ("COMPLETED", "FAILED", "CANCELLED"):
                wake_at = None
            elif (await (await conn.execute(q.HAS_PENDING, (run_id,))).fetchone() or [False])[0]:
                wake_at = now
            await conn.execute(q.RELEASE, (wake_at, run_id))
            if wake_at is not None and wake_at <= now:
                await conn.execute(q.NOTIFY, (self.channel, WORK))

    async def owners(self) -> list[str]:
        async with self._conn("listing owners") as conn:
            return [row[0] for row in await (await conn.execute(q.OWNERS)).fetchall()]

    # -- commands --------------------------------------------------------------------------

    async def send_command(
        self, run_id: RunId, kind: str, data: Mapping[str, Any], *, actor: str = ""
    ) -> int:
        encoded = command_json(run_id, kind, data)
        now = time.time()
        async with self._conn(f"sending {kind} to run {run_id!r}") as conn, conn.transaction():
            due = await (await conn.execute(q.MAKE_DUE, {"run": run_id, "now": now})).fetchone()
            if due is None:
                raise RunNotFound(run_id)
            row = await (
                await conn.execute(q.INSERT_COMMAND, (run_id, kind, encoded, actor, now))
            ).fetchone()
            await conn.execute(q.NOTIFY, (self.channel, COMMAND + run_id))
        assert row is not None
        return int(row[0])

    async def pending_commands(self, run_ids: Collection[RunId] | None = None) -> list[Command]:
        query, params = q.PENDING_COMMANDS, ()
        if run_ids is not None:
            if not run_ids:
                return []
            query, params = query + " AND run_id = ANY(%s)", (list(run_ids),)  # type: ignore[assignment]
        async with self._conn("reading commands") as conn:
            rows = await (await conn.execute(query + " ORDER BY id", params)).fetchall()
        return [_command(row) for row in rows]

    async def finish_command(self, command_id: int, outcome: str) -> None:
        async with self._conn("finishing a command") as conn:
            await conn.execute(q.FINISH_COMMAND, (time.time(), outcome, command_id))

    async def get_command(self, command_id: int) -> Command | None:
        async with self._conn("reading a command") as conn:
            row = await (await conn.execute(q.GET_COMMAND, (command_id,))).fetchone()
        return None if row is None else _command(row)

    # -- hints -----------------------------------------------------------------------------

    async def hints(self) -> AsyncIterator[Hint]:
        """LISTEN on the store's channel on a connection of its own; yields ``ready`` each time
        the subscription is (re)established (a client should look for work then: a hint sent
        while it was down is lost), and ends when the store closes."""
        backoff = 0.1
        warned = False  # one warning per outage, not one per try
        while not self._closing.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            except psycopg.Error as exc:
                if not warned:
                    log.warning("cannot listen for hints (retrying): %s", _one_line(exc))
                    warned = True
                await _sleep_unless(self._closing, random.uniform(0, backoff))
                backoff = min(backoff * 2, 1.0)
                continue
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                backoff, warned = 0.1, False
                yield Hint("ready")
                async for note in _notifies(conn, self._closing):
                    payload = note.payload
                    if payload.startswith(COMMAND):
                        yield Hint("command", RunId(payload[len(COMMAND) :]))
                    else:
                        yield Hint("work")
            except psycopg.Error as exc:
                if not self._closing.is_set() and not warned:
                    log.warning("lost the hint connection (reconnecting): %s", _one_line(exc))
                    warned = True
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()


async def _notifies(
    conn: psycopg.AsyncConnection[Any], closing: asyncio.Event
) -> AsyncIterator[psycopg.Notify]:
    """The connection's notifications until ``closing`` is set (checked twice a second)."""
    while not closing.is_set():
        async for note in conn.notifies(timeout=0.5):
            yield note
            if closing.is_set():
                return


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
