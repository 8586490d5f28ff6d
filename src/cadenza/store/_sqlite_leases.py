"""The SQLite store's leases and commands: claims (one, or every due run), renewals, releases,
and the command table. Each write joins the store's group commit like an append, so a claim
and the appends it fences are ordered by the one write lock SQLite has."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Mapping
from typing import Any

from pydantic_core import from_json

from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.store._rows import RUN_COLUMNS, command_json, run_from_row
from cadenza.store._sqlite_sql import RUN_EXISTS
from cadenza.store._sqlite_writes import GroupCommit, Write
from cadenza.store.base import CLAIMABLE, DUE_NOW, Command, RunRecord

_TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED')"
_CLAIMABLE = "(" + ", ".join(f"'{s}'" for s in CLAIMABLE) + ")"

# A claim that changes the owner starts a new epoch; a held run is due (so that it is picked up
# again if its owner dies without releasing it).
_CLAIM = (
    "UPDATE runs SET owner = ?1, lease_until = ?2, "
    "epoch = CASE WHEN owner IS ?1 THEN max(epoch, 1) ELSE epoch + 1 END, "
    f"wake_at = CASE WHEN status IN {_TERMINAL} THEN NULL "
    "WHEN wake_at IS NULL OR wake_at > ?5 THEN ?5 ELSE wake_at END "
    "WHERE run_id = ?3 AND (?4 OR owner IS NULL OR owner = ?1 OR coalesce(lease_until, 0) < ?5) "
    "RETURNING epoch"
)
_RENEW = "UPDATE runs SET lease_until = ? WHERE run_id = ? AND owner = ? AND epoch = ? RETURNING 1"
_RELEASE = (
    "UPDATE runs SET owner = NULL, lease_until = NULL, "
    f"wake_at = CASE WHEN status IN {_TERMINAL} THEN NULL "
    "WHEN EXISTS (SELECT 1 FROM commands WHERE run_id = ?1 AND done_at IS NULL) THEN ?3 "
    "ELSE ?4 END WHERE run_id = ?1 AND owner = ?2"
)
_OWNERS = "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL"
_INSERT_COMMAND = (
    "INSERT INTO commands (run_id, kind, data, actor, created_at) VALUES (?, ?, ?, ?, ?)"
)
_MAKE_DUE = (
    "UPDATE runs SET wake_at = ?2 WHERE run_id = ?1 AND (wake_at IS NULL OR wake_at > ?2) "
    f"AND status NOT IN {_TERMINAL}"
)
_FINISH_COMMAND = "UPDATE commands SET done_at = ?, outcome = ? WHERE id = ? AND done_at IS NULL"
_COMMAND_COLUMNS = "id, run_id, kind, data, actor, created_at, done_at, outcome"


class _Claim(Write):
    __slots__ = ("lease_until", "owner", "steal")

    def __init__(self, run_id: RunId, owner: str, lease_until: float, steal: bool) -> None:
        super().__init__(run_id)
        self.owner = owner
        self.lease_until = lease_until
        self.steal = steal

    def apply(self, cur: sqlite3.Cursor) -> int | None:
        row = cur.execute(
            _CLAIM, (self.owner, self.lease_until, self.run_id, self.steal, time.time())
        ).fetchone()
        if row is not None:
            return int(row[0])
        if cur.execute(RUN_EXISTS, (self.run_id,)).fetchone() is None:
            raise RunNotFound(self.run_id)
        return None


class _ClaimDue(Write):
    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: list[Any]) -> None:
        super().__init__(RunId(""))
        self.sql = sql
        self.params = params

    def apply(self, cur: sqlite3.Cursor) -> list[RunRecord]:
        return [run_from_row(row) for row in cur.execute(self.sql, self.params).fetchall()]


class _Renew(Write):
    __slots__ = ("lease_until", "leases", "owner")

    def __init__(self, owner: str, leases: Mapping[RunId, int], lease_until: float) -> None:
        super().__init__(RunId(""))
        self.owner = owner
        self.leases = dict(leases)
        self.lease_until = lease_until

    def apply(self, cur: sqlite3.Cursor) -> set[RunId]:
        held: set[RunId] = set()
        for run_id, epoch in self.leases.items():
            if cur.execute(_RENEW, (self.lease_until, run_id, self.owner, epoch)).fetchone():
                held.add(run_id)
        return held


class _Release(Write):
    __slots__ = ("owner", "wake_at")
    # Forget the run's cached last seq once released, as for a finished run: a released run
    # may sleep for hours (100,000 of them kept 20 MiB cached); its next append reads it.
    finished = True

    def __init__(self, run_id: RunId, owner: str, wake_at: float | None) -> None:
        super().__init__(run_id)
        self.owner = owner
        self.wake_at = wake_at

    def apply(self, cur: sqlite3.Cursor) -> None:
        cur.execute(_RELEASE, (self.run_id, self.owner, time.time(), self.wake_at))
        if cur.rowcount == 0 and cur.execute(RUN_EXISTS, (self.run_id,)).fetchone() is None:
            raise RunNotFound(self.run_id)


class _SendCommand(Write):
    __slots__ = ("actor", "data", "kind")

    def __init__(self, run_id: RunId, kind: str, data: str, actor: str) -> None:
        super().__init__(run_id)
        self.kind = kind
        self.data = data
        self.actor = actor

    def apply(self, cur: sqlite3.Cursor) -> int:
        if cur.execute(RUN_EXISTS, (self.run_id,)).fetchone() is None:
            raise RunNotFound(self.run_id)
        now = time.time()
        cur.execute(_INSERT_COMMAND, (self.run_id, self.kind, self.data, self.actor, now))
        command_id = cur.lastrowid
        cur.execute(_MAKE_DUE, (self.run_id, now))
        assert command_id is not None
        return command_id


class _FinishCommand(Write):
    __slots__ = ("command_id", "outcome")

    def __init__(self, command_id: int, outcome: str) -> None:
        super().__init__(RunId(""))
        self.command_id = command_id
        self.outcome = outcome

    def apply(self, cur: sqlite3.Cursor) -> None:
        cur.execute(_FINISH_COMMAND, (time.time(), self.outcome, self.command_id))


def _command(row: tuple[Any, ...]) -> Command:
    return Command(
        id=row[0], run_id=RunId(row[1]), kind=row[2], data=from_json(row[3]), actor=row[4],
        created_at=row[5], done_at=row[6], outcome=row[7],
    )  # fmt: skip


def claim_due_sql(
    owner: str,
    lease_until: float,
    limit: int,
    workflows: Collection[tuple[str, str]] | None,
    queues: Collection[str] | None,
    dead_owners: Collection[str],
    now: float,
    run_ids: Collection[RunId] | None = None,
) -> tuple[str, list[Any]] | None:
    """The statement that claims due runs, with its parameters (``None``: nothing can match)."""
    if limit <= 0 or (workflows is not None and not workflows):
        return None
    if (queues is not None and not queues) or (run_ids is not None and not run_ids):
        return None
    where = [f"wake_at <= ? AND status IN {_CLAIMABLE}"]
    params: list[Any] = [owner, lease_until, now]
    held = "owner IS NULL OR lease_until < ?"
    params.append(now)
    if dead_owners:
        held += f" OR owner IN ({', '.join('?' * len(dead_owners))})"
        params.extend(dead_owners)
    where.append(f"({held})")
    if queues is not None:
        where.append(f"queue IN ({', '.join('?' * len(queues))})")
        params.extend(queues)
    if workflows is not None:
        pairs = list(workflows)
        where.append(f"(workflow, version) IN (VALUES {', '.join(['(?, ?)'] * len(pairs))})")
        params.extend(x for pair in pairs for x in pair)
    if run_ids is not None:
        where.append(f"run_id IN ({', '.join('?' * len(run_ids))})")
        params.extend(run_ids)
    params.append(limit)
    sql = (
        "UPDATE runs SET owner = ?, lease_until = ?, epoch = epoch + 1 WHERE run_id IN "
        f"(SELECT run_id FROM runs WHERE {' AND '.join(where)} ORDER BY wake_at LIMIT ?) "
        f"RETURNING {RUN_COLUMNS}"
    )
    return sql, params


class SQLiteLeases:
    """The lease and command methods of :class:`~cadenza.store.sqlite.SQLiteStore`, over the
    group commit it writes through (given, so that both share one batch and one lock)."""

    def __init__(self, writer: GroupCommit) -> None:
        self._writer = writer

    async def claim(
        self, run_id: RunId, owner: str, *, lease_until: float, steal: bool = False
    ) -> int | None:
        epoch: int | None = await self._writer.submit(_Claim(run_id, owner, lease_until, steal))
        return epoch

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
        self._writer.cursor()  # not open: an error, even when nothing could match
        found = claim_due_sql(
            owner, lease_until, limit, workflows, queues, dead_owners, time.time(), run_ids
        )
        if found is None:
            return []
        claimed: list[RunRecord] = await self._writer.submit(_ClaimDue(*found))
        claimed.sort(key=lambda r: r.wake_at or 0.0)  # RETURNING follows no ORDER BY
        return claimed

    async def renew(
        self, owner: str, leases: Mapping[RunId, int], *, lease_until: float
    ) -> set[RunId]:
        self._writer.cursor()  # not open: an error, even with no lease to renew
        if not leases:
            return set()
        held: set[RunId] = await self._writer.submit(_Renew(owner, leases, lease_until))
        return held

    async def release(self, run_id: RunId, owner: str, *, wake_at: float | None = DUE_NOW) -> None:
        await self._writer.submit(_Release(run_id, owner, wake_at))

    async def owners(self) -> list[str]:
        return [row[0] for row in self._writer.cursor().execute(_OWNERS).fetchall()]

    async def send_command(
        self, run_id: RunId, kind: str, data: Mapping[str, Any], *, actor: str = ""
    ) -> int:
        encoded = command_json(run_id, kind, data)
        command_id: int = await self._writer.submit(_SendCommand(run_id, kind, encoded, actor))
        return command_id

    async def pending_commands(self, run_ids: Collection[RunId] | None = None) -> list[Command]:
        cur = self._writer.cursor()
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE done_at IS NULL"
        params: list[Any] = []
        if run_ids is not None:
            if not run_ids:
                return []
            sql += f" AND run_id IN ({', '.join('?' * len(run_ids))})"
            params.extend(run_ids)
        return [_command(row) for row in cur.execute(sql + " ORDER BY id", params).fetchall()]

    async def finish_command(self, command_id: int, outcome: str) -> None:
        await self._writer.submit(_FinishCommand(command_id, outcome))

    async def get_command(self, command_id: int) -> Command | None:
        cur = self._writer.cursor()
        sql = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?"
        row = cur.execute(sql, (command_id,)).fetchone()
        return None if row is None else _command(row)
