"""The tamper-evident audit trail: every event of a run carries ``prev_hash``, the hash of the
run's previous event, and ``hash``, a SHA-256 over its own canonical encoding chained to
``prev_hash``. Editing, deleting or reordering an event row in the store is then detected at
exactly that event by :func:`verify`. Pure functions, no I/O: the store assigns the hashes when it
appends (it is the one place that sees every event of a run in order), the CLI reads events and
calls :func:`export`. ``cadenza audit verify`` checks the rows as stored instead (a row no
store writes is tampering to report, not an event to decode): :mod:`cadenza.observe.audit_verify`
recomputes the same chain from the stored fields with :func:`link_broken`.

Canonical encoding (what an external auditor recomputes)
--------------------------------------------------------

``canonical(event)`` is the UTF-8 encoding of the JSON object ::

    {"attempt":A,"data":D,"path":P,"run_id":R,"scope":S,"seq":N,"ts":T,"type":Y}

- exactly these eight keys, in this (sorted) order, no whitespace anywhere;
- strings (``path``, ``run_id``, ``scope``, ``type`` and every string inside ``D``) are JSON
  strings with non-ASCII characters written as UTF-8, not escaped; only ``"`` → ``\\"``,
  ``\\`` → ``\\\\``, ``\\b \\f \\n \\r \\t``, and the other code points below U+0020 as ``\\u00xx``
  (lowercase hex) are escaped;
- integers (``seq``, ``attempt``, integers in ``D``) are plain decimal;
- floats (``ts``, floats in ``D``) use Python's ``repr``: the shortest decimal that reads back
  as the same double, ``.0`` on integral values, exponent form (``1e+16``, ``1e-05``) below
  1e-4 or from 1e16 on; ``NaN``, ``Infinity``, ``-Infinity`` for the non-finite values. ``ts``
  is always a float (an integer ``ts`` is written ``5.0``) and a negative zero is written
  ``0.0`` (SQLite does not keep the sign of a zero);
- ``Y`` is the event type's value (``"step_failed"``);
- ``D`` is the event's data *as stored*: the value obtained by decoding the JSON text the
  store keeps (models are dicts there, tuples lists), with object keys sorted by code point at
  every level, arrays in order, ``true``/``false``/``null``.

In Python, for an event row read straight from the database::

    body = json.dumps(
        {"attempt": attempt, "data": json.loads(data_text), "path": path, "run_id": run_id,
         "scope": scope, "seq": seq, "ts": float(ts) + 0.0, "type": type},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode("utf-8")

The chain: ``hash = sha256(prev_hash.encode("ascii") + body).hexdigest()`` (lowercase hex),
where ``prev_hash`` is the ``hash`` of the run's event ``seq - 1``, and :data:`GENESIS` (the
empty string) for ``seq`` 1, so the first event's hash is simply ``sha256(body)``.

What the chain does and does not prove: without a secret, anyone who can write the database can
also recompute every hash after an edit, and removing events from the *end* of a log leaves a
valid chain. Both are caught by an *anchor*: a ``(seq, hash)`` of each run recorded outside the
database (a previous export, a ticket, a signed log) and passed to :func:`verify` (the file
format of ``cadenza audit anchor`` is in :mod:`cadenza.observe.anchors`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from json.encoder import encode_basestring
from typing import Any, Literal

from pydantic_core import from_json, to_json

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId

__all__ = [
    "GENESIS",
    "Broken",
    "Reason",
    "canonical",
    "chain_hash",
    "verify",
    # for store implementations: the chain from stored fields
    "as_stored",
    "encode_stored",
    "link",
    "link_broken",
    # the compliance export
    "EXPORT_FIELDS",
    "export",
    "record",
]

#: ``prev_hash`` of a run's first event.
GENESIS = ""


def _data_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, fast.

    Data is encoded on every append. ``JSONEncoder.encode`` builds a new C encoder per call,
    which is half its cost on small dicts; this builds the C encoder once (no circularity
    check: the values come from a JSON decoder) and falls back to ``JSONEncoder`` where the C
    encoder is missing or has another signature."""
    fallback = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    # None without the _json accelerator (and absent from the type stubs)
    c_make_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover
        return fallback
    try:
        encoder = c_make_encoder(None, None, encode_basestring, None, ":", ",", True, False, True)
        sample = {"b": [1, 2.5, None, True, "é\n"], "a": {"y": {}, "x": []}}
        if "".join(encoder(sample, 0)) != fallback(sample):  # pragma: no cover
            return fallback
    except TypeError:  # pragma: no cover - another Python's signature
        return fallback
    join = "".join
    return lambda value: join(encoder(value, 0))


_encode_data = _data_encoder()
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_sha256 = hashlib.sha256


def encode_stored(
    run_id: str,
    seq: int,
    type: str,
    path: str,
    scope: str,
    attempt: int,
    data: Any,
    ts: float,
) -> bytes:
    """The canonical encoding from an event's stored fields, ``data`` being the value decoded
    from the stored JSON (no further round trip). Stores call this on their append path; it is
    byte for byte the ``json.dumps`` of the module docstring, written out by hand because
    building the envelope dict and sorting its keys would double the cost."""
    ts_text = float.__repr__(float(ts) + 0.0)
    if ts_text in _NON_FINITE:
        ts_text = _NON_FINITE[ts_text]
    return (
        f'{{"attempt":{int(attempt)},"data":{_encode_data(data) if data else "{}"},'
        f'"path":{encode_basestring(path)},"run_id":{encode_basestring(run_id)},'
        f'"scope":{encode_basestring(scope)},"seq":{int(seq)},"ts":{ts_text},'
        f'"type":{encode_basestring(type)}}}'
    ).encode()


def as_stored(data: Any) -> Any:
    """``data`` as a store keeps it: encoded with ``pydantic_core.to_json`` (the store's
    encoder) and decoded again, so an event hashes the same before it is appended and after it
    is read back. Raises ``ValueError`` for what cannot be stored as JSON."""
    return from_json(to_json(data)) if data else {}


def canonical(event: Event) -> bytes:
    """The canonical encoding of ``event`` (see the module docstring)."""
    return encode_stored(
        event.run_id,
        event.seq,
        str(event.type),
        event.path,
        event.scope,
        event.attempt,
        as_stored(event.data),
        event.ts,
    )


def link(prev_hash: str, body: bytes) -> str:
    """The chain step: hex SHA-256 of ``prev_hash`` followed by a canonical encoding."""
    return _sha256(prev_hash.encode() + body).hexdigest()


def chain_hash(prev_hash: str, event: Event) -> str:
    """The hash ``event`` gets when it follows an event whose hash is ``prev_hash``
    (:data:`GENESIS` for a run's first event)."""
    return link(prev_hash, canonical(event))


# -- verification -------------------------------------------------------------------------------


class Reason(StrEnum):
    """Why :func:`verify` stopped at an event."""

    EDITED = "edited"  # the event's content no longer matches its hash
    DELETED = "deleted"  # events before this one are missing (a seq gap or a broken link)
    REORDERED = "reordered"  # this event links to one that is elsewhere in the log
    UNHASHED = "unhashed"  # no hash: written before the audit trail existed, or forged
    TRUNCATED = "truncated"  # the log ends before an anchored event (the seq reported)
    REWRITTEN = "rewritten"  # the anchored event's hash differs: the chain was recomputed
    # Found only from the rows as stored (cadenza.observe.audit_verify):
    MALFORMED = "malformed"  # a field holds what no store writes: not JSON, an unknown type, NULL
    RECORD = "record"  # the run's row disagrees with its log (status, workflow, version, input)
    SNAPSHOT = "snapshot"  # the stored snapshot is not the fold of the events up to its seq
    ORPHANED = "orphaned"  # events or a snapshot stored under an id that has no run row
    VANISHED = "vanished"  # an anchored run is no longer in the store


@dataclass(frozen=True, slots=True)
class Broken:
    """The first place at which a run's record does not hold: an event (``seq`` >= 1), or the
    run as a whole (``seq`` 0: its row is missing or damaged, the run is gone)."""

    run_id: RunId
    seq: int
    reason: Reason
    detail: str = ""

    def __str__(self) -> str:
        where = f"run {self.run_id} event {self.seq}" if self.seq > 0 else f"run {self.run_id}"
        return f"{where}: {self.reason} ({self.detail})"


def link_broken(
    run_id: RunId,
    head: tuple[int, str],
    seq: int,
    prev_hash: str,
    digest: str,
    body: Callable[[], bytes],
    known: Container[str],
) -> Broken | None:
    """Check one event against its run's chain so far, ``head`` being the previous event's
    ``(seq, hash)`` (``(0, GENESIS)`` before the first): its seq continues the run, it has a
    hash, ``prev_hash`` is the head's hash, and the hash matches ``body`` (the canonical
    encoding, computed only when the rest holds). ``known`` holds every hash of the log, to
    tell an event moved elsewhere from one deleted."""
    last_seq, last_hash = head
    expected = last_seq + 1
    if seq > expected:
        missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
        return Broken(run_id, seq, Reason.DELETED, f"event(s) {missing} missing")
    if seq < expected:
        return Broken(run_id, seq, Reason.REORDERED, f"seq {seq} follows seq {last_seq}")
    if not digest:
        return Broken(run_id, seq, Reason.UNHASHED, "the event has no hash")
    if prev_hash != last_hash:
        moved = prev_hash in known
        return Broken(
            run_id,
            seq,
            Reason.REORDERED if moved else Reason.DELETED,
            f"prev_hash does not match the hash of event {last_seq}"
            + (" but that of another event" if moved else " nor that of any event"),
        )
    try:
        actual = link(last_hash, body())
    except (TypeError, ValueError) as exc:  # what cannot be encoded cannot have been stored
        return Broken(run_id, seq, Reason.EDITED, f"cannot encode the event: {exc}")
    if actual != digest:
        return Broken(run_id, seq, Reason.EDITED, "the content does not match its hash")
    return None


def verify(
    events: Iterable[Event], *, anchors: Mapping[RunId, tuple[int, str]] | None = None
) -> Broken | None:
    """Check the hash chains of ``events``; returns the first broken event, else ``None``.

    ``events`` are one or more runs' logs as ``read_events`` returns them (each run's events in
    order from seq 1; runs may be interleaved). An event is checked for, in this order: its seq
    continuing its run (a gap: :attr:`Reason.DELETED`), a hash at all, ``prev_hash`` equal to the
    previous event's hash (else :attr:`Reason.REORDERED` when that hash belongs to another event
    of the log, :attr:`Reason.DELETED` when it belongs to none), and its hash matching its
    content (:attr:`Reason.EDITED`).

    ``anchors`` maps a run id to a ``(seq, hash)`` recorded outside the store earlier: the run's
    event ``seq`` must still exist (else :attr:`Reason.TRUNCATED`, reported at the seq after the
    last one left) and still have that hash (else :attr:`Reason.REWRITTEN`)."""
    log = list(events)
    known = {e.hash for e in log if e.hash}
    anchors = anchors or {}
    heads: dict[RunId, tuple[int, str]] = {}
    anchored: dict[RunId, str] = {}
    for event in log:
        run_id = event.run_id
        head = heads.get(run_id, (0, GENESIS))
        broken = link_broken(
            run_id, head, event.seq, event.prev_hash, event.hash, partial(canonical, event), known
        )
        if broken is not None:
            return broken
        heads[run_id] = (event.seq, event.hash)
        anchor = anchors.get(run_id)
        if anchor is not None and anchor[0] == event.seq:
            anchored[run_id] = event.hash
    for anchored_run, (seq, expected_hash) in anchors.items():
        if anchored_run not in anchored:
            last_seq = heads.get(anchored_run, (0, GENESIS))[0]
            missing = f"the anchored event {seq} is missing"
            return Broken(anchored_run, last_seq + 1, Reason.TRUNCATED, missing)
        if anchored[anchored_run] != expected_hash:
            differs = "the hash differs from the anchored one"
            return Broken(anchored_run, seq, Reason.REWRITTEN, differs)
    return None


# -- export -------------------------------------------------------------------------------------

#: The columns of an export, in order.
EXPORT_FIELDS = ("run_id", "seq", "when", "who", "what", "why", "hash", "prev_hash")

_WHY_KEYS = ("reason", "comment", "error")


def record(event: Event) -> dict[str, Any]:
    """The compliance record of one event: who (``data["actor"]``, ``None`` when the event
    names nobody), what (type, path, and for a status change its transition), when (ISO-8601,
    UTC), why (the first of ``data``'s reason, comment and error, the error prefixed with its
    type), with the seq and hashes that tie it to the verified chain."""
    data = event.data
    what = str(event.type)
    if event.path:
        what += f" {event.path}"
    if event.type == EventType.STATUS and ("from" in data or "to" in data):
        what += f" {data.get('from')}->{data.get('to')}"
    why: str | None = None
    for key in _WHY_KEYS:
        value = data.get(key)
        if value is not None and value != "":
            why = str(value)
            if key == "error" and data.get("error_type"):
                why = f"{data['error_type']}: {why}"
            break
    actor = data.get("actor")
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "when": _iso_utc(event.ts),
        "who": None if actor is None else str(actor),
        "what": what,
        "why": why,
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    }


def export(events: Iterable[Event], fmt: Literal["jsonl", "csv"] = "jsonl") -> str:
    """One compliance record per event (see :func:`record`), as JSON lines or CSV.

    ``jsonl``: one JSON object per line, keys in :data:`EXPORT_FIELDS` order, ``null`` for an
    absent who/why. ``csv``: RFC 4180 (``\\r\\n`` line ends), a header row, empty cells for
    absent values. Values are written as recorded: a spreadsheet may interpret a cell that
    starts with ``=``, ``+``, ``-`` or ``@`` as a formula, so open exports as text."""
    records = (record(event) for event in events)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
        return out.getvalue()
    raise ValueError(f"unknown export format {fmt!r}: use 'jsonl' or 'csv'")


def _iso_utc(ts: float) -> str:
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):  # not a time (inf, nan, out of range)
        return str(ts)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
