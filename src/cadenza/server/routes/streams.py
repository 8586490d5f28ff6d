"""Live events as Server-Sent Events.

``/v1/runs/{id}/stream`` sends the run's log from ``Last-Event-ID`` (an event's seq; the
browser sends back the last one it received) or ``after_seq`` on: the events already stored,
then each as it commits, read from the store, so a dropped connection that reconnects misses
nothing and sees nothing twice. It ends (``event: end``) once the run has finished and
everything is sent. ``/v1/events/stream`` sends the events of every run the caller may see
from the moment it connects (ids ``RUN:SEQ``; catch up on one run with its own stream).

Events committed in this process are sent at once; those of other processes (workers) when
the stream next looks, every ``poll_interval`` seconds. A stream lasts at most an hour and
never past its credential's expiry; the client reconnects (with ``Last-Event-ID``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from cadenza.core.ids import RunId
from cadenza.server.access import Caller
from cadenza.server.deps import CallerDep, OpsDep, RunDep, problems
from cadenza.server.hub import wait_for
from cadenza.server.views import event_json

router = APIRouter(tags=["streams"])

MAX_STREAM_SECONDS = 3600.0
_PAGE = 500
_WATCHED_RUNS = 10_000


def _until(caller: Caller) -> float:
    """When a stream for ``caller`` must end: an hour from now, or its credential's expiry."""
    limit = time.time() + MAX_STREAM_SECONDS
    expires = caller.identity.expires
    return limit if expires is None else min(limit, expires)


def _resume_from(
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern="^[0-9]{1,18}$", description="The seq last received"),
    ] = None,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> int:
    """Where a run's stream starts: after ``Last-Event-ID`` if sent, else ``after_seq``
    (checked before the stream starts, so a bad one is a 422, not a broken stream)."""
    return after_seq if last_event_id is None else int(last_event_id)


def _reader(caller: CallerDep, ops: OpsDep) -> Caller:
    ops.server.access.require(caller, "read", "stream events")
    return caller


@router.get(
    "/v1/runs/{run_id}/stream",
    response_class=EventSourceResponse,
    responses=problems(404, 422),
)
async def run_stream(
    run: RunDep,
    caller: CallerDep,
    ops: OpsDep,
    cursor: Annotated[int, Depends(_resume_from)],
) -> AsyncIterator[ServerSentEvent]:
    """The run's events as they commit (``id`` is the event's seq, ``event`` its type,
    ``data`` the event as JSON), resumable with ``Last-Event-ID``."""
    server = ops.server
    until = _until(caller)
    run_id = RunId(run.run_id)
    with server.hub.subscribe(run_id) as subscription:
        waiter = subscription.event
        while True:
            waiter.clear()
            events = await server.tables.events(run_id, after_seq=cursor, limit=_PAGE)
            for event in events:
                cursor = event.seq
                yield ServerSentEvent(data=event_json(event), event=str(event.type), id=str(cursor))
            if len(events) == _PAGE:
                continue
            if not events:
                record = await server.engine.store.get_run(run_id)
                if record.status.terminal:
                    more = await server.tables.events(run_id, after_seq=cursor, limit=_PAGE)
                    if not more:
                        yield ServerSentEvent(data={"status": str(record.status)}, event="end")
                        return
                    continue
            if time.time() >= until:
                yield ServerSentEvent(data={"reconnect": True}, event="expired")
                return
            await wait_for(waiter, server.poll_interval)


@router.get("/v1/events/stream", response_class=EventSourceResponse, responses=problems(403))
async def all_events(
    caller: Annotated[Caller, Depends(_reader)], ops: OpsDep
) -> AsyncIterator[ServerSentEvent]:
    """The events of every run the caller may see, from now on (``id`` is ``RUN:SEQ``)."""
    server = ops.server
    workflows = ops.visible_workflows(caller)
    visible = None if workflows is None else set(workflows)
    until = _until(caller)
    started = time.time()
    cursors = {
        h.run_id: h.seq for h in await server.tables.active_heads(workflows, started, _WATCHED_RUNS)
    }
    looked, next_scan = started, 0.0
    with server.hub.subscribe(None) as subscription:
        while True:
            # Runs that committed here are read at once; every poll_interval, the store says
            # which runs other processes may have written to.
            changed = subscription.take()
            targets = {RunId(r): -1 for r, w in changed.items() if visible is None or w in visible}
            if time.monotonic() >= next_scan:
                now = time.time()
                heads = await server.tables.active_heads(workflows, looked - 5.0, _WATCHED_RUNS)
                looked, next_scan = now, time.monotonic() + server.poll_interval
                targets.update({h.run_id: h.seq for h in heads})
            for run_id, head in targets.items():
                known = run_id in cursors
                seen = cursors.get(run_id, 0)
                while head < 0 or head > seen:
                    events = await server.tables.events(run_id, after_seq=seen, limit=_PAGE)
                    for event in events:
                        seen = event.seq
                        if not known and event.ts < started:
                            continue  # a run that was still before this stream began
                        yield ServerSentEvent(
                            data=event_json(event),
                            event=str(event.type),
                            id=f"{event.run_id}:{event.seq}",
                        )
                    if len(events) < _PAGE:
                        break
                cursors[run_id] = seen
            if len(cursors) > 2 * _WATCHED_RUNS:
                cursors = dict(list(cursors.items())[-_WATCHED_RUNS:])
            if time.time() >= until:
                yield ServerSentEvent(data={"reconnect": True}, event="expired")
                return
            await wait_for(subscription.event, max(0.0, next_scan - time.monotonic()))
