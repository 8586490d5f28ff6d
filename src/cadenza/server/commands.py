"""What the API does to runs, over the engine's public methods: the object-level check
(a run the caller may not see is "not found"), the server's role check (recorded in the
run's log when refused), then the engine, which applies the workflow's ``allowed_users`` and
an approval's approvers and quorum with the caller's proven identity, and records its own
refusals.

Some engine calls go on until the run stops again (a decision, a signal, unpause, re-drive,
fork: the run continues in the process that gave the command). The API answers as soon as
the command's effect is in the run's log; the run goes on in the background here (executing
server) or is handed to the workers (see :meth:`Server.command_engine`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import structlog

from cadenza import Engine
from cadenza.core.errors import RunNotFound
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId, new_run_id
from cadenza.core.status import WorkflowStatus
from cadenza.identity import ApprovalDenied
from cadenza.server.access import Caller, Refused
from cadenza.server.authn import RequestInfo
from cadenza.server.catalog import Entry
from cadenza.server.hub import wait_for
from cadenza.server.problems import Problem
from cadenza.server.service import Server, report_failure
from cadenza.server.tables import STALE_AFTER, AuditEntry, RunQuery
from cadenza.server.views import check_input
from cadenza.store.base import RunRecord

__all__ = ["Operations"]

_log = structlog.get_logger("cadenza.server")
T = TypeVar("T")

#: How long a request waits for its command's effect (or a concurrent request with its
#: idempotency key) before answering that it is still in progress.
PATIENCE = 30.0
_MAX_ID = 200


class Operations:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._inflight: dict[tuple[str, str], asyncio.Future[tuple[RunId, str]]] = {}
        self._forking: dict[str, tuple[asyncio.Lock, int]] = {}

    # -- seeing ---------------------------------------------------------------------------------

    async def run_for(self, caller: Caller, run_id: str, request: RequestInfo) -> RunRecord:
        """The run, if the caller may see it; 404 (the same as for an unknown id) if not,
        recorded in the server's audit log."""
        if not run_id or len(run_id) > _MAX_ID or not run_id.isprintable():
            raise Problem(404, f"no run with id {run_id[:_MAX_ID]!r}")
        record = await self.server.engine.store.get_run(RunId(run_id))
        if not self.sees(caller, record):
            await self.note(
                caller,
                request,
                "hidden_run",
                f"{caller.shown()} asked for run {run_id} of workflow {record.workflow}, "
                "which it may not see",
            )
            raise RunNotFound(run_id)
        return record

    def sees(self, caller: Caller, record: RunRecord) -> bool:
        allowed = self.server.catalog.allowed_users(record.workflow, record.version)
        return self.server.access.sees(caller, allowed)

    def visible_workflows(self, caller: Caller) -> list[str] | None:
        """The workflows whose runs the caller may list (``None``: every one, an admin)."""
        access = self.server.access
        if access.may(caller, "admin"):
            return None
        catalog = self.server.catalog
        return [n for n in catalog.names() if access.sees(caller, catalog.allowed_users(n))]

    def entry_for(self, caller: Caller, name: str, version: str | None = None) -> Entry:
        entry = self.server.catalog.get(name, version)
        if entry is None or not self.server.access.sees(caller, entry.ir.config.allowed_users):
            what = f"workflow {name!r}" + (f" version {version!r}" if version else "")
            raise Problem(404, f"no {what} on this server")
        return entry

    async def note(self, caller: Caller | None, request: RequestInfo, kind: str, why: str) -> None:
        await self.server.audit.add(
            AuditEntry(
                time.time(),
                kind,
                why,
                identity=caller.name if caller else "",
                method=request.method,
                path=request.path,
                client=request.client,
            )
        )

    async def refuse(
        self, record: RunRecord, caller: Caller, command: str, exc: Refused
    ) -> NoReturn:
        """Record a refusal of the server's own in the run's log, then raise it."""
        data = {"actor": caller.actor, "command": command, "reason": str(exc)}
        record_refusal = _refusal_recorder(self.server.engine)
        recorded = False
        if record_refusal is not None:
            recorded = await record_refusal(record, EventType.REFUSED, data)
        if not recorded:
            _log.warning("refusal_not_recorded", run_id=record.run_id, **data)
        raise exc

    async def require(self, record: RunRecord, caller: Caller, command: str) -> None:
        try:
            self.server.access.require(caller, "operate", f"{command} runs of {record.workflow}")
        except Refused as exc:
            await self.refuse(record, caller, command, exc)

    # -- starting -------------------------------------------------------------------------------

    async def start(
        self,
        caller: Caller,
        entry: Entry,
        values: dict[str, Any],
        queue: str,
        request: RequestInfo,
        idempotency: tuple[str, str] | None,
    ) -> tuple[RunId, bool]:
        """Start a run (once per idempotency key: ``(key, request hash)``); returns its id and
        whether this request created it."""
        try:
            self.server.access.require(caller, "operate", f"start {entry.name}")
        except Refused as exc:
            await self.note(caller, request, "start_refused", str(exc))
            raise
        checked = check_input(entry.ir.schema, values)

        async def create(run_id: RunId) -> None:
            try:
                await self._create(caller, entry, checked, queue, run_id)
            except ApprovalDenied as exc:
                await self.note(caller, request, "start_refused", str(exc))
                raise

        if idempotency is None:
            run_id = new_run_id()
            await create(run_id)
            return run_id, True
        key, digest = idempotency
        return await self._once(caller.name, key, digest, create)

    async def _create(
        self, caller: Caller, entry: Entry, values: dict[str, Any], queue: str, run_id: RunId
    ) -> None:
        engine = self.server.engine
        if self.server.executes:
            await engine.start(
                entry.workflow,
                values,
                run_id=run_id,
                target=entry.target,
                actor=caller.actor,
                queue=queue,
            )
        else:
            await engine.submit(
                entry.workflow,
                values,
                run_id=run_id,
                target=entry.target,
                actor=caller.actor,
                queue=queue,
            )

    async def _once(
        self,
        owner: str,
        key: str,
        digest: str,
        create: Callable[[RunId], Awaitable[None]],
    ) -> tuple[RunId, bool]:
        """The run of ``(owner, key)``: started here if the key is new, else the one it
        started (409 when that was for another request). Concurrent requests of this process
        wait for the first; those of other processes meet at the table's primary key."""
        slot = (owner, key)
        while True:
            leader = self._inflight.get(slot)
            if leader is None:
                break
            try:
                run_id, theirs = await asyncio.shield(leader)
            except Exception:
                continue  # the first one failed: try again, perhaps as the first
            _same_request(key, theirs, digest)
            return run_id, False
        future: asyncio.Future[tuple[RunId, str]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._inflight[slot] = future
        try:
            run_id, theirs, created = await self._reserve(owner, key, digest, create)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            raise
        finally:
            self._inflight.pop(slot, None)
        future.set_result((run_id, theirs))
        _same_request(key, theirs, digest)
        return run_id, created

    async def _reserve(
        self,
        owner: str,
        key: str,
        digest: str,
        create: Callable[[RunId], Awaitable[None]],
    ) -> tuple[RunId, str, bool]:
        tables = self.server.tables
        mine = new_run_id()
        row = await tables.reserve(owner, key, digest, mine, time.time())
        deadline = time.monotonic() + PATIENCE
        while row.run_id != mine:
            if row.request_hash != digest or row.state == "done":
                return row.run_id, row.request_hash, False
            # Another process is starting it: wait, or take over a key it abandoned.
            abandoned = row.created < time.time() - STALE_AFTER
            if (
                abandoned
                and not await self._exists(row.run_id)
                and await tables.take_over(owner, key, row.run_id, mine, time.time())
            ):
                break
            if time.monotonic() > deadline:
                raise Problem(
                    409, f"a request with Idempotency-Key {key!r} is still being processed; retry"
                )
            await asyncio.sleep(0.05)
            found = await tables.reservation(owner, key)
            row = found or await tables.reserve(owner, key, digest, mine, time.time())
        try:
            await create(mine)
        except BaseException:
            await tables.release(owner, key, mine)
            raise
        await tables.settle(owner, key, mine)
        return mine, digest, True

    async def _exists(self, run_id: RunId) -> bool:
        try:
            await self.server.engine.store.get_run(run_id)
        except RunNotFound:
            return False
        return True

    # -- commands -------------------------------------------------------------------------------

    async def cancel(self, caller: Caller, record: RunRecord, reason: str) -> None:
        await self.require(record, caller, "cancel")
        await self.server.engine.cancel(record.run_id, reason, actor=caller.actor)

    async def pause(self, caller: Caller, record: RunRecord, reason: str) -> None:
        await self.require(record, caller, "pause")
        await self.server.engine.pause(record.run_id, reason, actor=caller.actor)

    async def unpause(self, caller: Caller, record: RunRecord) -> None:
        await self.require(record, caller, "unpause")
        applied = self._event_after(
            record.run_id,
            lambda e: e.type is EventType.STATUS and e.data.get("to") == WorkflowStatus.RUNNING,
        )
        await self._apply(
            lambda engine: engine.unpause(record.run_id, actor=caller.actor),
            applied,
            record.run_id,
        )

    async def signal(self, caller: Caller, record: RunRecord, name: str, payload: Any) -> None:
        await self.require(record, caller, "signal")
        await self.deliver(record.run_id, name, payload, caller.actor)

    async def deliver(self, run_id: RunId, name: str, payload: Any, actor: str) -> None:
        """Deliver a signal and return once it is in the run's log."""
        applied = self._event_after(
            run_id,
            lambda e: (
                e.type is EventType.SIGNAL
                and e.data.get("name") == name
                and e.data.get("actor") == actor
            ),
        )
        await self._apply(
            lambda engine: engine.signal(run_id, name, payload, actor=actor), applied, run_id
        )

    async def decide(
        self, caller: Caller, record: RunRecord, step: str, approve: bool, comment: str
    ) -> None:
        actor = caller.actor
        applied = self._event_after(
            record.run_id,
            lambda e: (
                e.type is EventType.APPROVAL_DECISION
                and e.path == step
                and e.data.get("actor") == actor
            ),
        )
        await self._apply(
            lambda engine: engine.decide(
                record.run_id, step, actor=actor, approve=approve, comment=comment
            ),
            applied,
            record.run_id,
        )

    async def retry(self, caller: Caller, record: RunRecord) -> RunId:
        await self.require(record, caller, "re-drive")
        return await self._copy(
            record, lambda engine: engine.redrive(record.run_id, actor=caller.actor)
        )

    async def fork(
        self, caller: Caller, record: RunRecord, after: str, patch: dict[str, Any]
    ) -> RunId:
        await self.require(record, caller, "fork")
        if patch:
            entry = self.server.catalog.get(record.workflow, record.version)
            if entry is not None:
                check_input(entry.ir.schema, patch, at=("body", "set"))
        return await self._copy(
            record,
            lambda engine: engine.fork(record.run_id, after=after, set=patch, actor=caller.actor),
        )

    async def _copy(self, record: RunRecord, call: Callable[[Engine], Awaitable[Any]]) -> RunId:
        """Re-drive or fork: the new run's id (found as the new child of ``record``; copies of
        one run made here are made one at a time so that each finds its own)."""
        source = record.run_id
        lock, users = self._forking.get(source, (asyncio.Lock(), 0))
        self._forking[source] = (lock, users + 1)
        try:
            async with lock:
                query = RunQuery(parent=source, limit=1000)
                before = {r.run_id for r in await self.server.tables.list_runs(query)}

                async def child() -> RunId | None:
                    runs = await self.server.tables.list_runs(query)
                    return next((r.run_id for r in runs if r.run_id not in before), None)

                result = await self._apply(call, child, source)
        finally:
            lock, users = self._forking[source]
            if users == 1:
                del self._forking[source]
            else:
                self._forking[source] = (lock, users - 1)
        run_id = getattr(result, "run_id", result)
        if not isinstance(run_id, str):
            raise Problem(500, "the copy was made but could not be found")
        return RunId(run_id)

    def _event_after(
        self, run_id: RunId, match: Callable[[Event], bool]
    ) -> Callable[[], Awaitable[Event | None]]:
        """A probe: the first event from now on in the run's log that ``match`` accepts."""
        tables = self.server.tables
        cursor: int | None = None

        async def probe() -> Event | None:
            nonlocal cursor
            if cursor is None:
                cursor = await tables.last_seq(run_id)
                return None
            while True:
                events = await tables.events(run_id, after_seq=cursor, limit=500)
                if not events:
                    return None
                cursor = events[-1].seq
                found = next((e for e in events if match(e)), None)
                if found is not None:
                    return found

        return probe

    async def _apply(
        self,
        call: Callable[[Engine], Awaitable[T]],
        applied: Callable[[], Awaitable[Any]],
        run_id: RunId,
    ) -> T | Any:
        """Run an engine command until it returns, or its effect is in the log (``applied``
        gives something), whichever comes first; then the command's result, or the effect.
        A server that does not execute runs waits until the command's engine would start
        executing the run (and hands it back to the workers). A command still neither done
        nor applied after :data:`PATIENCE` is answered 202."""
        server = self.server
        await applied()  # the log's end before the command
        with server.hub.subscribe(run_id) as subscription:
            waiter = subscription.event
            async with server.command_engine() as engine:
                task = server.spawn(call(engine))
                task.add_done_callback(lambda _: waiter.set())
                limit = time.monotonic() + PATIENCE
                delay = 0.005
                try:
                    while True:
                        waiter.clear()
                        if task.done():
                            return task.result()
                        found = await applied()
                        if found is not None and (server.executes or engine.in_flight):
                            task.add_done_callback(report_failure)
                            return found
                        if time.monotonic() > limit:
                            raise Problem(
                                202,
                                "the command is sent but not applied yet; look at the run later",
                            )
                        await wait_for(waiter, delay)
                        delay = min(delay * 2, 0.2)
                finally:
                    if not server.executes and not task.done():
                        task.cancel()


def _refusal_recorder(engine: Engine) -> Any:
    """The engine's own way of recording a refusal in a run's log (the engine offers no
    public method for it yet: see where it keeps it), or ``None``."""
    parts = getattr(engine, "parts", None)
    for holder in (getattr(parts, "guard", None), getattr(engine, "guard", None)):
        found = getattr(holder, "record_refusal", None)
        if found is not None:
            return found
    return getattr(engine, "_record_refusal", None)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _same_request(key: str, theirs: str, digest: str) -> None:
    if theirs != digest:
        raise Problem(
            409,
            f"Idempotency-Key {key!r} was used before with a different request; use a new key "
            "for a new request",
        )


def request_digest(workflow: str, body: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the workflow and the request body."""
    text = json.dumps(
        {"workflow": workflow, **body}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()
