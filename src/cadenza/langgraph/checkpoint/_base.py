"""What the four savers share: LangGraph's whole checkpointer interface, sync and async,
written over two primitives a saver provides, ``_run`` and ``_arun`` (run one operation of
:mod:`._ops` in one transaction), and the observers told of every event the saver stores in a
thread's run once its transaction has committed (:mod:`._observers`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar, Self, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.langgraph.checkpoint import _maintenance, _ops, _reads
from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY, ListMemo
from cadenza.langgraph.checkpoint._heads import HeadCache
from cadenza.langgraph.checkpoint._observers import publish, with_observers
from cadenza.langgraph.checkpoint._ops import Context, Op
from cadenza.langgraph.checkpoint._runlog import Written, next_version
from cadenza.langgraph.checkpoint._sql import Dialect
from cadenza.observe.base import Observer
from cadenza.store.runlog import RunLog

T = TypeVar("T")


class CadenzaSaverBase(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer whose checkpoints live in Cadenza's store (see the package).

    ``full_every`` bounds delta chains: a list channel is stored in full again after that many
    versions stored as appended items (reading a value reads at most that many rows).
    ``observers`` (:class:`~cadenza.observe.base.Observer`) are told of every event stored in
    a thread's run, as an engine tells its observers of a native run's, once the transaction
    that stored it has committed, on the thread that called the saver."""

    _dialect: ClassVar[Dialect]
    _run_log: ClassVar[RunLog]

    def __init__(
        self,
        *,
        serde: SerializerProtocol | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(serde=serde)
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.full_every = full_every
        self.observers: tuple[Observer, ...] = tuple(observers)
        self._memo = ListMemo()
        self._heads: HeadCache | None = None  # a saver that can check them sets it

    @property
    def _ctx(self) -> Context:
        # built per call: ``with_allowlist`` and ``with_observers`` clone the saver
        published: list[Written] | None = [] if self.observers else None
        return Context(
            self._dialect,
            self._run_log,
            self.serde,
            self._memo,
            self.full_every,
            self._heads,
            published,
        )

    def with_observers(self, observers: Sequence[Observer]) -> Self:
        """A clone of this saver (the same connection, the same checkpoints) that also tells
        ``observers``; what ``compile(checkpointer=..., observers=...)`` gives a graph."""
        return with_observers(self, observers)

    def _write(self, ctx: Context, op: Op[T]) -> T:
        """Run a writing operation built with ``ctx``, then tell the observers."""
        result = self._run(op, write=True)
        if ctx.published:
            publish(self.observers, ctx.published)
        return result

    async def _awrite(self, ctx: Context, op: Op[T]) -> T:
        result = await self._arun(op, write=True)
        if ctx.published:
            publish(self.observers, ctx.published)
        return result

    def _run(self, op: Op[T], *, write: bool) -> T:
        raise NotImplementedError

    async def _arun(self, op: Op[T], *, write: bool) -> T:
        raise NotImplementedError

    # -- sync ----------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(_reads.get_tuple(self._ctx, config), write=False)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        ctx = self._ctx
        rows = self._run(_reads.list_rows(ctx, config, filter, before, limit), write=False)
        for row in rows:
            yield self._run(_reads.load_tuple(ctx, row, remember=False), write=False)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        ctx = self._ctx
        return self._write(ctx, _ops.put(ctx, config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        ctx = self._ctx
        self._write(ctx, _ops.put_writes(ctx, config, writes, task_id, task_path))

    def save_batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Make several ``put``/``put_writes`` calls, given as ``(method, args)``, in one
        transaction: all are stored or, on an error, none. The facade's background writer
        uses it to store the checkpoints of several steps with one commit."""
        ctx = self._ctx
        self._write(ctx, self._batch(ctx, calls))

    def _batch(self, ctx: Context, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> Op[list[Any]]:
        ops: list[Op[Any]] = []
        for method, args in calls:
            if method == "put":
                ops.append(_ops.put(ctx, *args))
            elif method == "put_writes":
                ops.append(_ops.put_writes(ctx, *args))
            else:
                raise ValueError(f"save_batch: {method!r} is not put or put_writes")
        return _ops.coalesced(_ops.sequence(ops))

    def delete_thread(self, thread_id: str) -> None:
        ctx = self._ctx
        self._write(ctx, _maintenance.delete_thread(ctx, thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        ctx = self._ctx
        self._write(ctx, _maintenance.delete_for_runs(ctx, run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        ctx = self._ctx
        self._write(ctx, _maintenance.copy_thread(ctx, source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"`` keeps the latest checkpoint of each namespace of each thread (with
        its pending writes and the blobs it reads) and deletes the older ones; ``"delete"``
        deletes the threads' checkpoints. The runs' logs are kept, with the deletion in them."""
        ctx = self._ctx
        self._write(ctx, _maintenance.prune(ctx, thread_ids, strategy))

    # -- async ---------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun(_reads.get_tuple(self._ctx, config), write=False)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        ctx = self._ctx
        rows = await self._arun(_reads.list_rows(ctx, config, filter, before, limit), write=False)
        for row in rows:
            yield await self._arun(_reads.load_tuple(ctx, row, remember=False), write=False)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        ctx = self._ctx
        return await self._awrite(ctx, _ops.put(ctx, config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        ctx = self._ctx
        await self._awrite(ctx, _ops.put_writes(ctx, config, writes, task_id, task_path))

    async def asave_batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """:meth:`save_batch` for async callers."""
        ctx = self._ctx
        await self._awrite(ctx, self._batch(ctx, calls))

    async def adelete_thread(self, thread_id: str) -> None:
        ctx = self._ctx
        await self._awrite(ctx, _maintenance.delete_thread(ctx, thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        ctx = self._ctx
        await self._awrite(ctx, _maintenance.delete_for_runs(ctx, run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        ctx = self._ctx
        await self._awrite(ctx, _maintenance.copy_thread(ctx, source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        ctx = self._ctx
        await self._awrite(ctx, _maintenance.prune(ctx, thread_ids, strategy))

    # -- versions ------------------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """See :func:`~._runlog.next_version`."""
        return next_version(current)
