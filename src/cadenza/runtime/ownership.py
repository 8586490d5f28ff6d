"""Who is running a run: an owner id per engine, and whether a local owner is still alive.

On one machine (the embedded SQLite case) a run whose owner process is gone can be taken
over at once instead of waiting for its lease to expire."""

from __future__ import annotations

import os
import socket
import uuid

HOST = socket.gethostname()

#: Seconds a claim lasts without renewal; engines renew every third of it.
LEASE_SECONDS = 30.0


def new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    if not owner:
        return True
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != HOST:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
