"""What each stream mode shows: the state after a step (``values``) and each task's writes
(``updates``), mapped the way LangGraph maps them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._keys import ERROR, INTERRUPT, RETURN
from cadenza.langgraph.errors import EmptyChannelError

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task
    from cadenza.langgraph.channels.base import BaseChannel

__all__ = ("read_channels", "task_updates", "wrote_any")


def read_channels(channels: Mapping[str, BaseChannel], select: Sequence[str] | str) -> Any:
    """The values of ``select`` (empty channels left out), or one channel's value."""
    if isinstance(select, str):
        try:
            return channels[select].get()
        except EmptyChannelError:
            return None
    values: dict[str, Any] = {}
    for k in select:
        ch = channels[k]
        if ch.is_available():
            values[k] = ch.get()
    return values


def wrote_any(writes: Iterable[tuple[str, Any]], keys: Sequence[str] | str) -> bool:
    if isinstance(keys, str):
        return any(c == keys for c, _ in writes)
    return any(c in keys for c, _ in writes)


def task_updates(
    output_keys: Sequence[str] | str,
    items: Sequence[tuple[Task, Sequence[tuple[str, Any]]]],
    cached: bool = False,
) -> dict[str, Any] | None:
    """The ``updates`` chunk for tasks that finished: ``{node: {key: value}}``; ``None``
    for a node that wrote no output key, a list when it wrote a key twice."""
    shown = [
        (t, ww)
        for t, ww in items
        if not t.hidden and ww and ww[0][0] != ERROR and ww[0][0] != INTERRUPT
    ]
    if not shown:
        return None
    single = isinstance(output_keys, str)
    keys = output_keys if single else frozenset(output_keys)
    grouped: dict[str, Any] = {t.name: [] for t, _ in shown}
    for task, writes in shown:
        ret = [v for c, v in writes if c == RETURN]
        if ret:
            grouped[task.name].append(ret[0])
        elif single:
            grouped[task.name].extend(v for c, v in writes if c == keys)
        elif any(c in keys for c, _ in writes):
            counts = Counter(c for c, _ in writes)
            if any(n > 1 for c, n in counts.items() if c in keys):
                grouped[task.name].extend({c: v} for c, v in writes if c in keys)
            else:
                grouped[task.name].append({c: v for c, v in writes if c in keys})
    for name, values in grouped.items():
        if len(values) == 0:
            grouped[name] = None
        elif len(values) == 1:
            grouped[name] = values[0]
    if cached:
        grouped["__metadata__"] = {"cached": cached}
    return grouped
