"""Checkpoint ids (UUIDv6, ordered by time) and the ids derived from them by hashing.

Task ids hash the checkpoint id with the task's namespace, step, name and triggers, the way
LangGraph does for v>1 checkpoints, so a task keeps its id across a resume and a checkpoint
written by either engine names the same tasks. XXH3-128 is used where the ``xxhash`` package
is installed (it comes with ``langgraph``); otherwise BLAKE2b-128, whose ids are stable on
their own but differ from LangGraph's."""

from __future__ import annotations

import random
import time
from hashlib import blake2b

try:
    from xxhash import xxh3_128_hexdigest as _hex128
except ImportError:  # pragma: no cover - depends on the environment

    def _hex128(data: bytes) -> str:
        return blake2b(data, digest_size=16).hexdigest()


_UUID_EPOCH_OFFSET = 0x01B21DD213814000  # 100 ns ticks from 1582-10-15 to 1970-01-01
_last_ticks = 0


def uuid6(clock_seq: int | None = None) -> str:
    """A version-6 UUID string; later calls in this process always sort after earlier ones."""
    global _last_ticks
    ticks = time.time_ns() // 100 + _UUID_EPOCH_OFFSET
    if ticks <= _last_ticks:
        ticks = _last_ticks + 1
    _last_ticks = ticks
    seq = random.getrandbits(14) if clock_seq is None else clock_seq & 0x3FFF
    value = ((ticks >> 12) & 0xFFFFFFFFFFFF) << 80
    value |= (0x6000 | (ticks & 0x0FFF)) << 64
    value |= (0x8000 | seq) << 48
    value |= random.getrandbits(48)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def checkpoint_id_bytes(checkpoint_id: str) -> bytes:
    return bytes.fromhex(checkpoint_id.replace("-", ""))


def task_id(namespace: bytes, *parts: str) -> str:
    """A UUID-shaped id from the hash of ``namespace`` and ``parts``."""
    h = _hex128(namespace + "".join(parts).encode())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def interrupt_id(ns: str, answered: int) -> str:
    """The id of a task's interrupt, keyed by how many answers the task already holds."""
    return _hex128((f"{ns}|{answered}" if answered else ns).encode())


def is_interrupt_id(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )
