"""The checkpoint dict, in LangGraph's format (``langgraph.checkpoint.base.Checkpoint``,
version 4): id (UUIDv6), ts, channel_values, channel_versions, versions_seen,
updated_channels. Values are the channels' own objects, not copies: savers serialize
them when they store the checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cadenza.langgraph._engine.ids import uuid6
from cadenza.langgraph._keys import MISSING
from cadenza.langgraph.channels.base import BaseChannel

__all__ = (
    "channels_from_checkpoint",
    "copy_checkpoint",
    "create_checkpoint",
    "empty_checkpoint",
    "new_versions",
)

LATEST_VERSION = 4


def _now() -> str:
    return datetime.now(UTC).isoformat()


def empty_checkpoint() -> dict[str, Any]:
    return {
        "v": LATEST_VERSION,
        "id": uuid6(clock_seq=-2),
        "ts": _now(),
        "channel_values": {},
        "channel_versions": {},
        "versions_seen": {},
    }


def create_checkpoint(
    checkpoint: Mapping[str, Any],
    channels: Mapping[str, BaseChannel] | None,
    step: int,
    *,
    id: str | None = None,
    updated_channels: set[str] | None = None,
) -> dict[str, Any]:
    """The next checkpoint: the current channel values (of channels that have a version)
    under a new id."""
    versions = checkpoint["channel_versions"]
    if channels is None:
        values = checkpoint["channel_values"]
    else:
        values = {}
        for k, ch in channels.items():
            if k in versions:
                v = ch.checkpoint()
                if v is not MISSING:
                    values[k] = v
    return {
        "v": LATEST_VERSION,
        "ts": _now(),
        "id": id or uuid6(clock_seq=step),
        "channel_values": values,
        "channel_versions": dict(versions),
        # the executor replaces the inner dicts instead of changing them, so sharing is safe
        "versions_seen": dict(checkpoint["versions_seen"]),
        "updated_channels": None if updated_channels is None else sorted(updated_channels),
    }


def copy_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "v": checkpoint["v"],
        "ts": checkpoint["ts"],
        "id": checkpoint["id"],
        "channel_values": dict(checkpoint["channel_values"]),
        "channel_versions": dict(checkpoint["channel_versions"]),
        "versions_seen": {k: dict(v) for k, v in checkpoint["versions_seen"].items()},
        "updated_channels": checkpoint.get("updated_channels"),
    }


def channels_from_checkpoint(
    specs: Mapping[str, BaseChannel], checkpoint: Mapping[str, Any]
) -> dict[str, BaseChannel]:
    """Fresh channels for one run, holding the checkpoint's values."""
    values = checkpoint["channel_values"]
    if not values:
        return {k: spec.from_checkpoint(MISSING) for k, spec in specs.items()}
    return {k: spec.from_checkpoint(_unwrap(values.get(k, MISSING))) for k, spec in specs.items()}


def _unwrap(value: Any) -> Any:
    # a channel written as a delta channel stores snapshots; read them as plain values
    if type(value).__name__ == "_DeltaSnapshot":
        return value.value
    return value


def new_versions(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The channel versions that moved since the last checkpoint was stored."""
    if not previous:
        return dict(current)
    return {k: v for k, v in current.items() if k not in previous or v > previous[k]}
