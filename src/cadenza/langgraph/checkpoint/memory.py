"""The in-memory checkpointer: LangGraph's own ``InMemorySaver``, its threads runs of a
Cadenza :class:`~cadenza.store.memory.MemoryStore`.

The checkpoints are kept by LangGraph's saver, the reference ``BaseCheckpointSaver`` (it stores
serialized copies, so a node mutating state in place cannot change history; the executor, not
the saver, is where the facade is faster). Each thread is also a run of ``store`` (a new
``MemoryStore`` unless one is given, e.g. an engine's), recorded as the SQLite and PostgreSQL
savers record theirs (:mod:`._runlog`): its checkpoints as events, its status checked against
a thread's lifecycle, every event told to ``observers``. So ``store.list_runs()`` lists the
threads, and ``cadenza audit`` verifies their logs, as with the durable savers::

    saver = InMemorySaver(observers=[metrics])
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})
    await saver.store.get_run(RunId("t1"))
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver as _InMemorySaver
from langgraph.checkpoint.memory import PersistentDict
from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint._lifecycle import Cause
from cadenza.langgraph.checkpoint._observers import publish, with_observers
from cadenza.langgraph.checkpoint._ops import thread_of
from cadenza.langgraph.checkpoint._runlog import Head, Log, next_nodes, writes_status
from cadenza.observe.base import Observer
from cadenza.store.memory import MemoryStore
from cadenza.store.runlog import complete

__all__ = ("InMemorySaver", "MemorySaver", "PersistentDict")

T = TypeVar("T")


class InMemorySaver(_InMemorySaver):
    """LangGraph's in-memory checkpointer, its threads runs of ``store`` (see the module)."""

    def __init__(
        self,
        *,
        serde: SerializerProtocol | None = None,
        factory: type[defaultdict[Any, Any]] = defaultdict,
        store: MemoryStore | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(serde=serde, factory=factory)
        self.store = MemoryStore() if store is None else store
        self.observers: tuple[Observer, ...] = tuple(observers)
        self._lock = threading.Lock()  # one change of a run at a time (savers run in threads)

    def with_observers(self, observers: Sequence[Observer]) -> Self:
        """A clone (the same checkpoints, the same store) that also tells ``observers``."""
        return with_observers(self, observers)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _, ns, parent_id = thread_of(config)
        thread_id = config["configurable"]["thread_id"]  # LangGraph's key, maybe not a str
        checkpoint_id = checkpoint["id"]
        md = get_serializable_checkpoint_metadata(config, metadata)
        due = next_nodes(checkpoint)

        def record(head: Head) -> Log:
            log = Log(head)  # refuses a native run's id
            log.checkpoint(checkpoint_id, ns, parent_id, md, due, special=head.special)
            return log

        return self._change(
            thread_id,
            checkpoint_id if not ns else None,
            record,
            lambda: super(InMemorySaver, self).put(config, checkpoint, metadata, new_versions),
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        _, ns, checkpoint_id = thread_of(config)
        thread_id = config["configurable"]["thread_id"]
        change = writes_status(writes) if not ns else None

        def record(head: Head) -> Log | None:
            if change is None or not (head.ours and head.stored):
                return None  # else the checkpoint's put, still to come, sets the status
            log = Log(head)
            log.set_status(*change, Cause.WRITES)
            return log

        self._change(
            thread_id,
            None if checkpoint_id is None else str(checkpoint_id),
            record if change is not None else None,
            lambda: super(InMemorySaver, self).put_writes(config, writes, task_id, task_path),
        )

    def delete_thread(self, thread_id: str) -> None:  # LangGraph's key: maybe not a str
        kept = self.storage.get(thread_id) or {}
        deleted = sum(len(checkpoints) for checkpoints in kept.values())

        def record(head: Head) -> Log | None:
            if not (deleted and head.ours):
                return None
            log = Log(head)
            why = f"delete_thread: {deleted} checkpoint(s) deleted"
            log.set_status(WorkflowStatus.CANCELLED, why, Cause.DELETION, always=True)
            return log

        self._change(
            thread_id, None, record, lambda: super(InMemorySaver, self).delete_thread(thread_id)
        )

    def _change(
        self,
        thread_id: Any,
        checkpoint_id: str | None,
        record: Callable[[Head], Log | None] | None,
        store: Callable[[], T],
    ) -> T:
        """Store a change with LangGraph's saver and record what ``record`` makes of it (given
        the thread's head; ``None``: nothing to record) in the thread's run, one change at a
        time; then tell the observers. The events are built (the thread's lifecycle checked, a
        thread id that names a native run refused) before anything is stored."""
        if record is None:
            return store()
        with self._lock:
            log = record(self._head(thread_id, checkpoint_id))
            result = store()
            if log is not None:
                complete(log.write(self.store.run_log))
        if self.observers and log is not None and log.events:
            publish(self.observers, [log.published()])
        return result

    def _head(self, thread_id: Any, checkpoint_id: str | None) -> Head:
        """The thread's run, and what is stored about its root checkpoint ``checkpoint_id``."""
        run = complete(self.store.run_log.head(RunId(str(thread_id))))
        if checkpoint_id is None or not run.exists:
            return Head(run)
        writes = self.writes.get((thread_id, "", checkpoint_id)) or {}
        special = tuple(channel for (_, idx), (_, channel, _, _) in writes.items() if idx < 0)
        stored = checkpoint_id in ((self.storage.get(thread_id) or {}).get("") or {})
        return Head(run, special, stored)


MemorySaver = InMemorySaver
