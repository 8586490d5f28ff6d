"""Channel values stored once per version, lists as deltas.

LangGraph's own savers store every channel value again in full at every checkpoint, so a
conversation's ``messages`` list makes storage grow with the square of its length. Here each
channel version is one row (as LangGraph's Postgres saver keeps blobs; small values, see
:func:`is_inline`, ride in the checkpoint's own row instead), and a list that extends a version
stored before is stored as the appended items only, with a reference to that base version.
Every ``full_every``-th version of a chain is a full copy again, so rebuilding a value reads at
most that many rows.

Which version a new list extends is remembered in memory (:class:`ListMemo`): the last list
stored or read for the thread, namespace and channel. The memo may be stale (another process,
a deleted thread, a pruned version): a delta row is written only if its base row still exists
with the random ``tag`` the memo saw, checked in the same statement, and otherwise the value is
written in full. So the memo can only cost space, never correctness.

The new list *extends* the remembered one when its first items equal the remembered items
(``==``, which is identity first). An item mutated in place after it was stored is equal to
itself, so such a change would not be seen: LangGraph state is to be updated by returning new
values, never by mutating them.

Pure logic, no I/O: the savers run the statements.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.core.errors import StoreError

__all__ = [
    "DELTA",
    "EMPTY",
    "FULL",
    "Blob",
    "Known",
    "ListMemo",
    "is_inline",
    "needed_blobs",
    "new_tag",
    "plan_blobs",
    "rebuild",
    "version_key",
]

#: ``kind`` of a blob row: the whole value, items appended to ``base``, or an emptied channel.
FULL, DELTA, EMPTY = 0, 1, 2

#: Versions in a delta chain before a full copy is stored again.
DEFAULT_FULL_EVERY = 128

#: Longest text stored inline in the checkpoint row rather than as a blob.
INLINE_TEXT = 256
_INT64 = (-(2**63), 2**64)


def is_inline(value: Any) -> bool:
    """Whether a value is small enough to store in the checkpoint's own row (``None``, a bool,
    a number, a short text), as LangGraph's Postgres saver does: no blob row to write or read
    for the small state most graphs keep."""
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return True
    if kind is int:
        return _INT64[0] <= value < _INT64[1]
    return kind is str and len(value) <= INLINE_TEXT


def version_key(version: str | int | float) -> str:
    """The text a channel version is stored under (versions may be ``int`` or ``str``)."""
    return version if isinstance(version, str) else str(version)


def new_tag() -> int:
    """A random token identifying one write of a blob row (a signed 63-bit integer)."""
    return random.getrandbits(63)


@dataclass(slots=True)
class Known:
    """A list channel's value as stored at ``version`` (row ``tag``, ``depth`` deltas deep)."""

    version: str
    tag: int
    depth: int
    items: list[Any]


class ListMemo:
    """The last list stored or read per (thread, namespace, channel), least recently used
    dropped first: the base a new version of the list is compared with. Thread-safe (a saver
    on a connection pool runs calls in parallel)."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._known: OrderedDict[tuple[str, str, str], Known] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Known | None:
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
            return known

    def put(self, key: tuple[str, str, str], known: Known) -> None:
        with self._lock:
            self._known[key] = known
            self._known.move_to_end(key)
            if len(self._known) > self.limit:
                self._known.popitem(last=False)

    def forget(self, thread_ids: Iterable[str]) -> None:
        """Drop what is remembered of these threads (their rows were deleted)."""
        gone = set(thread_ids)
        with self._lock:
            for key in [k for k in self._known if k[0] in gone]:
                del self._known[key]


@dataclass(slots=True)
class Blob:
    """One blob row to write. A ``DELTA`` row is stored only while its base row still has
    ``base_tag``; otherwise ``value`` is written in full instead (see :meth:`as_full`)."""

    channel: str
    version: str
    kind: int
    type: str | None
    blob: bytes | None
    tag: int
    base: str | None = None
    base_tag: int | None = None
    value: Any = None

    def as_full(self, serde: SerializerProtocol) -> Blob:
        type_, blob = serde.dumps_typed(self.value)
        return Blob(self.channel, self.version, FULL, type_, blob, new_tag())


def plan_blobs(
    thread_id: str,
    checkpoint_ns: str,
    values: Mapping[str, Any],
    new_versions: Mapping[str, str | int | float],
    memo: ListMemo,
    serde: SerializerProtocol,
    full_every: int = DEFAULT_FULL_EVERY,
) -> list[Blob]:
    """The rows for the channels that have a new version, remembering the lists in ``memo``;
    none for values stored inline (:func:`is_inline`).

    A channel in ``new_versions`` but not in ``values`` was emptied: it gets no row, as reading
    a version that has none gives no value (files written before kept an ``EMPTY`` row; they
    read the same). Most steps empty a channel (the trigger they consumed): a row there would
    cost a write per checkpoint."""
    blobs: list[Blob] = []
    for channel, version in new_versions.items():
        if channel not in values:
            continue
        key = version_key(version)
        value = values[channel]
        if is_inline(value):
            continue
        tag = new_tag()
        if type(value) is not list:
            type_, blob = serde.dumps_typed(value)
            blobs.append(Blob(channel, key, FULL, type_, blob, tag))
            continue
        memo_key = (thread_id, checkpoint_ns, channel)
        known = memo.get(memo_key)
        depth = 0
        row: Blob | None = None
        if known is not None and known.version != key and known.depth + 1 < full_every:
            count = len(known.items)
            if len(value) >= count and value[:count] == known.items:
                type_, blob = serde.dumps_typed(value[count:])
                depth = known.depth + 1
                row = Blob(channel, key, DELTA, type_, blob, tag, known.version, known.tag, value)
        if row is None:
            type_, blob = serde.dumps_typed(value)
            row = Blob(channel, key, FULL, type_, blob, tag)
        blobs.append(row)
        memo.put(memo_key, Known(key, tag, depth, list(value)))
    return blobs


def rebuild(
    thread_id: str,
    checkpoint_ns: str,
    rows: Iterable[tuple[str, str, int, int, str | None, bytes | None, int]],
    serde: SerializerProtocol,
) -> tuple[dict[str, Any], dict[str, Known]]:
    """Channel values from blob rows ``(channel, version, kind, depth, type, blob, tag)``: for
    each channel its version's row (depth 0) and, for a delta, the rows of its bases (depth
    1, 2, ...) down to a full copy. Returns the values and, for list values, what to remember
    of them. A chain that does not end in a full copy is an error (a base row is missing)."""
    chains: dict[str, list[tuple[str, int, int, str | None, bytes | None, int]]] = {}
    for channel, version, kind, depth, type_, blob, tag in rows:
        chains.setdefault(channel, []).append((version, kind, depth, type_, blob, tag))
    values: dict[str, Any] = {}
    known: dict[str, Known] = {}
    for channel, chain in chains.items():
        chain.sort(key=lambda link: link[2], reverse=True)
        base_version, kind, _, type_, blob, _ = chain[0]
        if kind == EMPTY:
            continue
        if kind != FULL:
            raise StoreError(
                f"thread {thread_id!r} namespace {checkpoint_ns!r}: channel {channel!r} version "
                f"{chain[-1][0]} cannot be rebuilt: the version it extends, below "
                f"{base_version}, is missing from the checkpoint tables"
            )
        assert type_ is not None
        value = serde.loads_typed((type_, blob or b""))
        if len(chain) > 1:
            if type(value) is not list:
                raise StoreError(
                    f"thread {thread_id!r}: channel {channel!r} version {base_version} holds a "
                    f"{type(value).__name__}, but later versions append list items to it"
                )
            for _, _, _, delta_type, delta_blob, _ in chain[1:]:
                assert delta_type is not None
                value.extend(serde.loads_typed((delta_type, delta_blob or b"")))
        values[channel] = value
        if type(value) is list:
            head_version, _, _, _, _, head_tag = chain[-1]
            known[channel] = Known(head_version, head_tag, len(chain) - 1, list(value))
    return values, known


def needed_blobs(
    referenced: Iterable[tuple[str, str, str]],
    bases: Mapping[tuple[str, str, str], str | None],
) -> set[tuple[str, str, str]]:
    """The blob rows, as ``(namespace, channel, version)``, that rebuilding the ``referenced``
    versions reads: those versions and, for deltas, every version below them. ``bases`` maps
    each stored row to the version it extends (``None`` for a full copy)."""
    keep: set[tuple[str, str, str]] = set()
    for key in referenced:
        while key in bases and key not in keep:
            keep.add(key)
            base = bases[key]
            if base is None:
                break
            key = (key[0], key[1], base)
    return keep
