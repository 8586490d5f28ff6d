"""How the memory store keeps a run's log: each event with its data as JSON (taken when it is
appended, so later changes to the objects a step returned cannot rewrite history), chained into
the audit hash chain when read, exactly as a durable store chains it."""

from __future__ import annotations

from collections.abc import Sequence

import pydantic_core

from cadenza.core.errors import ConflictError, StoreError
from cadenza.core.events import Event
from cadenza.core.ids import RunId
from cadenza.observe.audit import encode_stored, link

__all__ = ["chain", "check_sequence", "encode"]


def encode(run_id: RunId, events: Sequence[Event]) -> list[tuple[Event, bytes]]:
    """Each event with its data as JSON; what cannot be stored is refused here, before
    anything is kept."""
    out: list[tuple[Event, bytes]] = []
    for e in events:
        try:
            out.append((e, pydantic_core.to_json(e.data)))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"run {run_id!r}: cannot store event {e.seq} ({e.type}): {exc}"
            ) from exc
    return out


def chain(run_id: RunId, prev_hash: str, stored: Sequence[tuple[Event, bytes]]) -> list[Event]:
    """The stored events as read back: data decoded from its JSON, hashes chained to
    ``prev_hash`` exactly as a durable store computes them."""
    chained: list[Event] = []
    for e, blob in stored:
        data = pydantic_core.from_json(blob)
        body = encode_stored(run_id, e.seq, str(e.type), e.path, e.scope, e.attempt, data, e.ts)
        digest = link(prev_hash, body)
        chained.append(
            Event(run_id, e.seq, e.type, e.path, e.scope, e.attempt, data, e.ts, prev_hash, digest)
        )
        prev_hash = digest
    return chained


def check_sequence(run_id: RunId, last: int, events: Sequence[Event]) -> None:
    """Refuse events that do not continue a log ending at ``last``."""
    for offset, event in enumerate(events, start=1):
        if event.run_id != run_id:
            raise StoreError(f"event {event.seq} belongs to run {event.run_id!r}, not {run_id!r}")
        if event.seq != last + offset:
            raise ConflictError(
                f"run {run_id!r}: expected event seq {last + offset}, got {event.seq} "
                "(another writer appended first)"
            )
