"""Verifying what a store holds, as it holds it: the rows of a run (see
:meth:`cadenza.store.base.Store.read_stored`), not the events a store decodes from them.

A verifier exists to look at a database someone may have edited, so it must not depend on the
rows being well formed: a row whose ``data`` is not JSON, whose ``type`` is no event type, or
whose fields are NULL or of the wrong type is *tampering*, reported as :attr:`Reason.MALFORMED`
at that row, and the other runs are checked as usual. The chain is recomputed from the stored
fields exactly as the module docstring of :mod:`cadenza.observe.audit` documents.

Beyond the chain, the parts of a run that live outside it are checked against it:

- the run row's ``status`` must be the status its log ends in (the ``to`` of its last
  ``status`` event; ``INITIALIZING`` before any), and its ``workflow``, ``version`` and
  ``input`` those of its ``run_created`` event (:attr:`Reason.RECORD`);
- its rows of pending approvals must be the requests its log leaves open
  (:func:`cadenza.store._approvals.fold`), field by field (:attr:`Reason.RECORD`): the table
  is a materialised view of the logs, never a record of its own;
- the stored snapshot must be the fold of the events up to its ``seq``
  (:class:`~cadenza.runtime.progress.Progress`, the fold a run resumes with), field by field
  (:attr:`Reason.SNAPSHOT`). Values of the state are merged by the workflow's reducers, which
  only its definition knows: without them a state key written more than once is not compared
  (it is listed in :attr:`RunCheck.unchecked`), every other part of the snapshot is;
- events, a snapshot or pending approvals under an id that has no run row are
  :attr:`Reason.ORPHANED`.

Pure functions, no I/O: :mod:`cadenza.observe.audit_store` reads the rows and calls
:func:`check_run`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.state import Reducer
from cadenza.core.status import WorkflowStatus
from cadenza.observe.audit import GENESIS, Broken, Reason, encode_stored, link_broken
from cadenza.runtime.progress import Progress
from cadenza.store._approvals import stored_difference
from cadenza.store.base import Snapshot, StoredEvent, StoredLog, StoredRun, StoredSnapshot

__all__ = [
    "RunCheck",
    "check_log",
    "check_record",
    "check_run",
    "check_snapshot",
    "decode_event",
    "log_statuses",
]

#: ``RunRecord.version`` of the runs that LangGraph checkpointers record
#: (``cadenza.langgraph.checkpoint._runlog.RUN_VERSION``, not imported: it needs langgraph).
THREAD_VERSION = "langgraph"

_TYPES = {t.value: t for t in EventType}
_S = WorkflowStatus


@dataclass(frozen=True, slots=True)
class RunCheck:
    """The outcome of checking one run: ``broken`` is ``None`` when everything holds; ``head``
    is the ``(seq, hash)`` of its last event when its chain holds (what an anchor records);
    ``unchecked`` names the state keys of its snapshot whose values were not compared, for
    want of the workflow's reducers."""

    run_id: RunId
    broken: Broken | None
    head: tuple[int, str] | None = None
    unchecked: tuple[str, ...] = field(default=())


def check_run(
    log: StoredLog,
    *,
    anchor: tuple[int, str] | None = None,
    reducers: Mapping[str, Reducer] | None = None,
) -> RunCheck:
    """Check everything stored under one run id: its event rows and their chain (and
    ``anchor``, a ``(seq, hash)`` recorded earlier), its run row against its log, its snapshot
    against the fold of its log (``reducers``: the workflow's, when known). Returns the first
    problem found, in that order."""
    run_id = log.run_id
    if log.empty:
        detail = "nothing is stored under this id"
        if anchor is not None:
            detail = f"it was anchored at event {anchor[0]}, and {detail}"
        return RunCheck(run_id, Broken(run_id, 0, Reason.VANISHED, detail))
    broken, events = check_log(run_id, log.events, anchor)
    if broken is not None:
        return RunCheck(run_id, broken)
    if not events:
        if log.run is None:
            what = "a snapshot" if log.snapshot is not None else "pending approvals"
            return RunCheck(run_id, Broken(run_id, 0, Reason.ORPHANED, f"{what} but no run"))
        return RunCheck(run_id, Broken(run_id, 1, Reason.DELETED, "the run has no events"))
    head = (events[-1].seq, events[-1].hash)
    broken = check_record(run_id, log.run, events)
    if broken is None:
        differs = stored_difference(log.approvals, events)
        if differs is not None:
            broken = Broken(run_id, 0, Reason.RECORD, differs)
    if broken is not None or log.snapshot is None:
        return RunCheck(run_id, broken, head)
    broken, unchecked = check_snapshot(run_id, log.snapshot, events, reducers)
    return RunCheck(run_id, broken, head, unchecked)


# -- event rows ---------------------------------------------------------------------------------


def decode_event(run_id: RunId, row: StoredEvent) -> Event | str:
    """The event a row holds, or what is wrong with the row: a field of the wrong type (NULL,
    bytes, text for a number), an unknown event type, data that is not a JSON object."""
    seq, attempt, ts = row.seq, row.attempt, row.ts
    if type(seq) is not int:
        return f"seq is {_show(seq)}, not an integer"
    if type(attempt) is not int:
        return f"attempt is {_show(attempt)}, not an integer"
    texts = (row.type, row.path, row.scope, row.data, row.prev_hash, row.hash)
    names = ("type", "path", "scope", "data", "prev_hash", "hash")
    for name, value in zip(names, texts, strict=True):
        if not isinstance(value, str):
            return f"{name} is {_show(value)}, not text"
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return f"ts is {_show(ts)}, not a number"
    type_, path, scope, text, prev_hash, digest = (str(value) for value in texts)
    kind = _TYPES.get(type_)
    if kind is None:
        return f"type {_show(type_)} is not an event type"
    try:
        data = json.loads(text)
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return f"data is not JSON: {reason}"
    except RecursionError:
        return "data is JSON nested too deeply to decode"
    if not isinstance(data, dict):
        return f"data is a JSON {type(data).__name__}, not an object"
    return Event(run_id, seq, kind, path, scope, attempt, data, ts, prev_hash, digest)


def check_log(
    run_id: RunId, rows: Sequence[StoredEvent], anchor: tuple[int, str] | None = None
) -> tuple[Broken | None, list[Event]]:
    """Decode a run's event rows and check their chain (and ``anchor``); returns the first
    problem and the events decoded before it (all of them when there is none)."""
    known = {row.hash for row in rows if isinstance(row.hash, str) and row.hash}
    events: list[Event] = []
    head = (0, GENESIS)
    for row in rows:
        event = decode_event(run_id, row)
        if isinstance(event, str):
            if type(row.seq) is int:
                return Broken(run_id, row.seq, Reason.MALFORMED, event), events
            where = f"the row after event {head[0]}: " if head[0] else "a row: "
            return Broken(run_id, head[0] + 1, Reason.MALFORMED, where + event), events
        body = partial(
            encode_stored, run_id, event.seq, event.type.value, event.path, event.scope,
            event.attempt, event.data, event.ts,
        )  # fmt: skip
        broken = link_broken(run_id, head, event.seq, event.prev_hash, event.hash, body, known)
        if broken is not None:
            return broken, events
        events.append(event)
        head = (event.seq, event.hash)
    if anchor is not None:
        seq, digest = anchor
        if seq > head[0]:
            missing = f"the anchored event {seq} is missing"
            return Broken(run_id, head[0] + 1, Reason.TRUNCATED, missing), events
        if events[seq - 1].hash != digest:
            differs = "the hash differs from the anchored one"
            return Broken(run_id, seq, Reason.REWRITTEN, differs), events
    return None, events


# -- the run row --------------------------------------------------------------------------------


def log_statuses(events: Sequence[Event]) -> frozenset[WorkflowStatus]:
    """The statuses a run whose log is ``events`` may be in: the ``to`` of its last ``status``
    event, else ``INITIALIZING``. A LangGraph thread starts in the status of its first
    checkpoint without an event (``RUNNING``, ``COMPLETED`` when nothing is due, or waiting or
    failed through writes the log does not record), so before its first ``status`` event any
    of those is consistent with its log. Empty when the last status event names no status."""
    last = None
    for event in events:
        if event.type is EventType.STATUS:
            last = event
    if last is not None:
        try:
            return frozenset({WorkflowStatus(last.data.get("to"))})
        except (TypeError, ValueError):
            return frozenset()
    created = events[0] if events else None
    if created is None or created.type is not EventType.RUN_CREATED:
        return frozenset({_S.INITIALIZING})
    if created.data.get("version") != THREAD_VERSION:
        return frozenset({_S.INITIALIZING})
    first = events[1] if len(events) > 1 else None
    if first is None or first.type is not EventType.STEP_COMPLETED or "checkpoint_ns" in first.data:
        return frozenset({_S.RUNNING})
    initial = _S.RUNNING if first.data.get("next") else _S.COMPLETED
    return frozenset({initial, _S.WAITING_APPROVAL, _S.FAILED})


def check_record(run_id: RunId, run: StoredRun | None, events: Sequence[Event]) -> Broken | None:
    """The run row against the (verified) log: it exists, its status is one the log allows
    (:func:`log_statuses`), its workflow, version and input are those the log was created with."""
    if run is None:
        return Broken(run_id, 0, Reason.ORPHANED, "events are stored under this id but no run")
    for name in ("workflow", "version", "status", "input"):
        value = getattr(run, name)
        if not isinstance(value, str):
            return Broken(run_id, 0, Reason.MALFORMED, f"the run's {name} is {_show(value)}")
    try:
        status = WorkflowStatus(run.status)
    except ValueError:
        detail = f"the run's status {_show(run.status)} is not a status"
        return Broken(run_id, 0, Reason.MALFORMED, detail)
    created = events[0]
    if created.type is EventType.RUN_CREATED:
        for name in ("workflow", "version"):
            logged, stored = created.data.get(name), getattr(run, name)
            if logged is not None and logged != stored:
                detail = f"the run's {name} is {stored!r}, its log says {_show(logged)}"
                return Broken(run_id, created.seq, Reason.RECORD, detail)
        if "input" in created.data:
            try:
                stored_input = json.loads(str(run.input))
            except (ValueError, RecursionError):
                return Broken(run_id, 0, Reason.MALFORMED, "the run's input is not JSON")
            if _canonical(stored_input) != _canonical(created.data["input"]):
                detail = "the run's input is not the one its log was created with"
                return Broken(run_id, created.seq, Reason.RECORD, detail)
    allowed = log_statuses(events)
    if status not in allowed:
        said = " or ".join(sorted(allowed)) or "no status"
        last = max((e.seq for e in events if e.type is EventType.STATUS), default=events[-1].seq)
        detail = f"the run's status is {status}, its log says {said}"
        return Broken(run_id, last, Reason.RECORD, detail)
    return None


# -- the snapshot -------------------------------------------------------------------------------


def check_snapshot(
    run_id: RunId,
    snapshot: StoredSnapshot,
    events: Sequence[Event],
    reducers: Mapping[str, Reducer] | None = None,
) -> tuple[Broken | None, tuple[str, ...]]:
    """The stored snapshot against the fold of ``events`` up to its seq (a final one, of a
    finished run, holds only the state and status). With ``reducers`` ``None`` (the definition
    is not known) the values of state keys written more than once are not compared; they are
    returned, with the first difference found."""
    seq = snapshot.seq
    if type(seq) is not int:
        return Broken(run_id, 0, Reason.MALFORMED, f"the snapshot's seq is {_show(seq)}"), ()
    stored: list[dict[str, Any]] = []
    for name in ("state", "buffers"):
        value = _json_object(getattr(snapshot, name))
        if isinstance(value, str):
            return Broken(run_id, seq, Reason.MALFORMED, f"the snapshot's {name} {value}"), ()
        stored.append(value)
    state, buffers = stored
    if "done" in state and "loops" not in state:
        state = _with_iterations_folded(seq, state, buffers)
    if not 1 <= seq <= len(events):
        detail = f"the snapshot is of event {seq}, the log has events 1..{len(events)}"
        return Broken(run_id, seq, Reason.SNAPSHOT, detail), ()
    merged = _LastWriteWins()
    try:
        progress = Progress(reducers=merged if reducers is None else reducers)
        expected = progress.apply_all(events[:seq]).snapshot(final=progress.status.terminal)
    except Exception as exc:  # reducers are user code; a forged log may break the fold
        detail = f"the log up to event {seq} does not fold: {type(exc).__name__}: {exc}"
        return Broken(run_id, seq, Reason.SNAPSHOT, detail), ()
    unchecked = tuple(sorted(merged.keys & set(expected.state.get("values", {}))))
    for where, ours, theirs in _differences(state, expected.state, buffers, expected.buffers):
        if where.startswith("values.") and where[len("values.") :] in unchecked:
            continue
        detail = f"the snapshot's {where} is not what the log folds to"
        if ours is _ABSENT or theirs is _ABSENT:
            detail = f"the snapshot {'lacks' if ours is _ABSENT else 'has an extra'} {where}"
        return Broken(run_id, seq, Reason.SNAPSHOT, detail), unchecked
    return None, unchecked


def _with_iterations_folded(
    seq: int, state: dict[str, Any], buffers: dict[str, Any]
) -> dict[str, Any]:
    """A snapshot stored before finished loop iterations were folded (every iteration's
    records in ``done``, no ``loops``), as the run resumes from it: what folding drops is
    never read again, so it is no part of what the log must match. One that cannot be read
    is returned as it is, for the comparison to report."""
    try:
        return Progress.restore({}, Snapshot(seq, state, buffers)).snapshot().state
    except Exception:  # a forged snapshot may lack anything
        return state


class _LastWriteWins(Mapping[str, Reducer]):
    """Reducers for a definition that is not known: the last write wins, and each key merged
    into a value already there is noted (its real value depends on a reducer there may be)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def __getitem__(self, key: str) -> Reducer:
        def merge(old: Any, new: Any) -> Any:
            self.keys.add(key)
            return new

        return merge

    def __len__(self) -> int:
        return 1  # not empty: apply_update then asks for each key's reducer

    def __iter__(self) -> Iterator[str]:
        return iter(())


_ABSENT: Any = object()


def _differences(
    state: dict[str, Any],
    expected: dict[str, Any],
    buffers: dict[str, Any],
    expected_buffers: dict[str, Any],
) -> Iterator[tuple[str, Any, Any]]:
    """``(where, stored, folded)`` for each part that differs: a field of the snapshot, a key
    of its state values (``values.KEY``), or the buffers."""
    values, expected_values = state.get("values"), expected.get("values")
    for key in sorted(set(state) | set(expected)):
        if key == "values" and isinstance(values, dict) and isinstance(expected_values, dict):
            for name in sorted(set(values) | set(expected_values)):
                ours, theirs = values.get(name, _ABSENT), expected_values.get(name, _ABSENT)
                if ours is _ABSENT or theirs is _ABSENT or _canonical(ours) != _canonical(theirs):
                    yield f"values.{name}", ours, theirs
            continue
        ours, theirs = state.get(key, _ABSENT), expected.get(key, _ABSENT)
        if ours is _ABSENT or theirs is _ABSENT or _canonical(ours) != _canonical(theirs):
            yield key, ours, theirs
    if _canonical(buffers) != _canonical(expected_buffers):
        yield "buffers", buffers, expected_buffers


# -- helpers ------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    """One text per JSON value (keys sorted), to compare values decoded by two decoders."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_object(text: object) -> dict[str, Any] | str:
    """The JSON object ``text`` holds, or what is wrong with it."""
    if not isinstance(text, str):
        return f"is {_show(text)}, not text"
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"is not JSON: {exc.msg if isinstance(exc, json.JSONDecodeError) else exc}"
    except RecursionError:
        return "is JSON nested too deeply to decode"
    if not isinstance(value, dict):
        return f"is a JSON {type(value).__name__}, not an object"
    return value


def _show(value: object) -> str:
    """A stored value, short, for a message: NULL, bytes, or its repr cut to 60 characters."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"{len(value)} bytes (a BLOB, or text that is not UTF-8)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
