"""What a SQLite saver remembers of the threads it wrote, so that a ``put`` need not read them.

Appending a checkpoint's event needs the run's last seq, hash and time, its status, and for a
root checkpoint the special writes already stored for it (an interrupt that came first). Read
from the database, that is a statement or two per ``put``; remembered after the saver's own
write (a :class:`Tip`), it is none.

A tip is only as good as the knowledge that nothing else wrote the file since, which SQLite
gives cheaply: ``PRAGMA data_version`` changes when another connection commits, and the
connection's ``total_changes`` when anything else on it writes. The saver compares both with
what they were after its last commit, at the start of each write transaction
(:meth:`HeadCache.check`), and forgets every tip when either moved, or when a transaction
fails. Within that, a tip answers for a root checkpoint only when its id is newer than every
root checkpoint stored (so it is not stored yet) and when, as checked when the tip was first
taken, no special write waits for a checkpoint not stored yet; a special write stored later
drops the tip (:func:`~._ops.put_writes`), as does every full read of the head
(:func:`~._ops.read_head`, which every other operation that changes a thread makes).

PostgreSQL has no such cheap check: its savers read (and lock) the run every time.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from dataclasses import dataclass

from cadenza.langgraph.checkpoint._runlog import Head, Log
from cadenza.store.runlog import RunHead

__all__ = ["HeadCache", "Tip"]


@dataclass(slots=True, frozen=True)
class Tip:
    """A thread's run as the saver left it (its head in the store), and the newest root
    checkpoint id stored (``None``: none)."""

    run: RunHead
    last_root: str | None


class HeadCache:
    """Tips by thread id, least recently used dropped first. Used under the saver's lock."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._tips: OrderedDict[str, Tip] = OrderedDict()
        self._data_version: int | None = None  # as after the last commit; None: unknown
        self._changes = -1

    def __len__(self) -> int:
        return len(self._tips)

    def head(self, thread_id: str, checkpoint_id: str | None) -> Head | None:
        """The head ``put`` needs, or ``None`` when it must be read (``checkpoint_id``: of a
        root checkpoint; ``None`` in a subgraph's namespace)."""
        tip = self._tips.get(thread_id)
        if tip is None:
            return None
        last = tip.last_root
        if checkpoint_id is not None and last is not None and checkpoint_id <= last:
            return None  # maybe stored already, with special writes not remembered
        return Head(tip.run)

    def last_root(self, thread_id: str) -> str | None:
        tip = self._tips.get(thread_id)
        return None if tip is None else tip.last_root

    def remember(self, log: Log, last_root: str | None) -> None:
        """Remember the thread's run as ``log`` left it once written."""
        run = log.written
        if not run.exists:  # pragma: no cover - a written log has a run
            self.forget(log.run_id)
            return
        tips, thread_id = self._tips, log.run_id
        tips[thread_id] = Tip(run, last_root)
        tips.move_to_end(thread_id)
        if len(tips) > self.limit:
            tips.popitem(last=False)

    def forget(self, thread_id: str) -> None:
        self._tips.pop(thread_id, None)

    def clear(self) -> None:
        self._tips.clear()
        self._data_version = None

    # -- validity ------------------------------------------------------------------------------

    def check(self, conn: sqlite3.Connection, cur: sqlite3.Cursor) -> None:
        """At the start of a write transaction: forget every tip if anything but this saver
        wrote the file since its last commit."""
        if not self._tips:
            return
        if conn.total_changes != self._changes or _data_version(cur) != self._data_version:
            self.clear()

    def seal(self, cur: sqlite3.Cursor) -> None:
        """Before the commit: note the file's version if tips now rest on it (our own commit
        leaves ``data_version`` as it is)."""
        if self._tips and self._data_version is None:
            self._data_version = _data_version(cur)

    def committed(self, conn: sqlite3.Connection) -> None:
        """After the commit: the connection's changes, ours included."""
        self._changes = conn.total_changes


def _data_version(cur: sqlite3.Cursor) -> int:
    row = cur.execute("PRAGMA data_version").fetchone()
    return int(row[0])
