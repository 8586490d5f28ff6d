"""Node caching: a node with a cache policy whose input was seen before does not run; the
writes it made then are applied instead.

Entries live in a LangGraph ``BaseCache`` under the keys LangGraph gives them: the
namespace ``("__pregel_ns_writes", <module.qualname of the node's function>, <node>)``
and the xxh3-128 digest of the policy's ``key_func(input)``, so a facade graph and a
LangGraph graph built from the same functions can share one cache. Only a node that
finished is stored: an error or an interrupt would otherwise be skipped on the next run."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xxhash import xxh3_128_hexdigest

from cadenza.langgraph._keys import ERROR, INTERRUPT

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("CACHE_NS_WRITES", "NodeCache", "RunCache", "namespace")

CACHE_NS_WRITES = "__pregel_ns_writes"

Namespace = tuple[str, ...]
# (namespace, key, ttl in seconds or None)
CacheKey = tuple[Namespace, str, Any]
Writes = list[tuple[str, Any]]


def _identifier(fn: Any) -> str | None:
    """``module.qualname`` of a node's function, ``None`` where LangGraph's wrapper hides it
    (async functions, generators, callable objects, runnables and graphs)."""
    if fn is None or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        return None
    call = getattr(fn, "__call__", None)  # noqa: B004 - the method LangGraph inspects
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call):
        return None
    if inspect.isasyncgenfunction(call):
        return None
    name = getattr(fn, "__qualname__", None)
    if name is None:
        name = getattr(fn, "__name__", None)
    if name is None:
        return None
    module = getattr(fn, "__module__", None)
    return None if module is None else f"{module}.{name}"


def namespace(name: str, fn: Any) -> Namespace:
    """The namespace of node ``name``'s entries, running ``fn``."""
    return (CACHE_NS_WRITES, _identifier(fn) or "__dynamic__", name)


def _cacheable(writes: Iterable[tuple[str, Any]]) -> bool:
    return not any(c in (INTERRUPT, ERROR) for c, _ in writes)


class NodeCache:
    """A compiled graph's cache and the policy and namespace of each node that has one.
    Shared by every run of the graph; what one run found is kept by its loop."""

    __slots__ = ("cache", "policies")

    def __init__(self, cache: Any, policies: Mapping[str, tuple[Any, Namespace]]) -> None:
        self.cache = cache
        self.policies = dict(policies)

    def keys(self, tasks: Iterable[Task]) -> dict[str, CacheKey]:
        """The cache key of each task of a cached node, by task id."""
        out: dict[str, CacheKey] = {}
        policies = self.policies
        for task in tasks:
            entry = policies.get(task.name)
            if entry is None:
                continue
            policy, ns = entry
            args_key = policy.key_func(task.input)
            digest = xxh3_128_hexdigest(
                args_key.encode() if isinstance(args_key, str) else args_key
            )
            out[task.id] = (ns, digest, policy.ttl)
        return out

    def _wanted(
        self, tasks: Mapping[str, Task], keys: Mapping[str, CacheKey]
    ) -> dict[tuple[Namespace, str], Task]:
        return {(keys[tid][0], keys[tid][1]): t for tid, t in tasks.items() if tid in keys}

    @staticmethod
    def _matched(
        wanted: Mapping[tuple[Namespace, str], Task], found: Mapping[Any, Any]
    ) -> list[tuple[Task, Writes]]:
        return [(wanted[k], [tuple(w) for w in v]) for k, v in found.items() if k in wanted]

    def lookup(
        self, tasks: Mapping[str, Task], keys: Mapping[str, CacheKey]
    ) -> list[tuple[Task, Writes]]:
        """The stored writes of the tasks (not yet run) whose entries are found."""
        wanted = self._wanted(tasks, keys)
        if not wanted:
            return []
        return self._matched(wanted, self.cache.get(tuple(wanted)))

    async def alookup(
        self, tasks: Mapping[str, Task], keys: Mapping[str, CacheKey]
    ) -> list[tuple[Task, Writes]]:
        wanted = self._wanted(tasks, keys)
        if not wanted:
            return []
        return self._matched(wanted, await self.cache.aget(tuple(wanted)))

    @staticmethod
    def entry(key: CacheKey, writes: Sequence[tuple[str, Any]]) -> dict[Any, Any] | None:
        """What ``set`` stores for a task that ended with ``writes``; ``None`` for an
        error or an interrupt."""
        if not writes or not _cacheable(writes):
            return None
        return {(key[0], key[1]): (list(writes), key[2])}

    def clear(self, namespaces: Sequence[Namespace]) -> None:
        self.cache.clear(namespaces)

    async def aclear(self, namespaces: Sequence[Namespace]) -> None:
        await self.cache.aclear(namespaces)


class RunCache:
    """What one run does with its graph's :class:`NodeCache`: the keys of its step's tasks,
    and (``deferred``, the async driver) the entries it stores once the driver awaits
    :meth:`astore`."""

    __slots__ = ("deferred", "entries", "keys", "node_cache")

    def __init__(self, node_cache: NodeCache, *, deferred: bool) -> None:
        self.node_cache = node_cache
        self.deferred = deferred
        self.keys: dict[str, CacheKey] = {}
        self.entries: list[dict[Any, Any]] = []

    def match(self, tasks: Mapping[str, Task]) -> list[tuple[Task, Writes]]:
        """Before the step's tasks run: the stored writes of those not run yet that have
        an entry."""
        self.keys = keys = self.node_cache.keys(tasks.values())
        return self.node_cache.lookup({t: v for t, v in tasks.items() if not v.writes}, keys)

    async def amatch(self, tasks: Mapping[str, Task]) -> list[tuple[Task, Writes]]:
        self.keys = keys = self.node_cache.keys(tasks.values())
        todo = {t: v for t, v in tasks.items() if not v.writes}
        return await self.node_cache.alookup(todo, keys)

    def store(self, task_id: str, writes: Sequence[tuple[str, Any]]) -> None:
        """Cache the writes of a task that finished (of a cached node): now, or once the
        driver awaits :meth:`astore`."""
        key = self.keys.get(task_id)
        if key is None:
            return
        entry = self.node_cache.entry(key, writes)
        if entry is None:
            return
        if self.deferred:
            self.entries.append(entry)
        else:
            self.node_cache.cache.set(entry)

    async def astore(self) -> None:
        entries, self.entries = self.entries, []
        for entry in entries:
            await self.node_cache.cache.aset(entry)
