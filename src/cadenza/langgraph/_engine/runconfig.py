"""The run config (LangGraph's ``RunnableConfig``): normalised once per run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cadenza.langgraph._keys import CONF

__all__ = ("DEFAULT_RECURSION_LIMIT", "ensure_config", "patch_configurable")

DEFAULT_RECURSION_LIMIT = int(os.getenv("LANGGRAPH_DEFAULT_RECURSION_LIMIT", "10007"))
_KEYS = frozenset(
    (
        "tags",
        "metadata",
        "callbacks",
        "run_name",
        "max_concurrency",
        "recursion_limit",
        "configurable",
        "run_id",
    )
)
_TO_METADATA = (
    "thread_id",
    "checkpoint_id",
    "checkpoint_ns",
    "task_id",
    "run_id",
    "assistant_id",
    "graph_id",
)


def ensure_config(*configs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge configs (later wins; tags concatenate; configurable and metadata merge) and
    fill in the defaults. Unknown top-level keys go to ``configurable``."""
    out: dict[str, Any] = {
        "tags": [],
        "metadata": {},
        "callbacks": None,
        "recursion_limit": DEFAULT_RECURSION_LIMIT,
        CONF: {},
    }
    for config in configs:
        if not config:
            continue
        if not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a dict (a RunnableConfig), got {type(config).__name__}"
            )
        for k, v in config.items():
            if v is None:
                continue
            if k == CONF:
                out[CONF] = {**out[CONF], **v}
            elif k == "metadata":
                out["metadata"] = {**out["metadata"], **v}
            elif k == "tags":
                out["tags"] = [*out["tags"], *(t for t in v if t not in out["tags"])]
            elif k in _KEYS:
                out[k] = v
            else:
                out[CONF][k] = v
    conf, metadata = out[CONF], out["metadata"]
    for key in _TO_METADATA:
        if key not in metadata and (value := conf.get(key)):
            metadata[key] = value
    limit = out["recursion_limit"]
    if not isinstance(limit, int) or limit < 1:
        raise ValueError("recursion_limit must be at least 1")
    return out


def patch_configurable(config: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    return {**config, CONF: {**config.get(CONF, {}), **patch}}
