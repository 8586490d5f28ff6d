"""What the four savers share: LangGraph's whole checkpointer interface, sync and async,
written over two primitives a saver provides, ``_run`` and ``_arun`` (run one operation of
:mod:`._ops` in one transaction)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from cadenza.langgraph.checkpoint import _maintenance, _ops
from cadenza.langgraph.checkpoint._delta import DEFAULT_FULL_EVERY, ListMemo
from cadenza.langgraph.checkpoint._heads import HeadCache
from cadenza.langgraph.checkpoint._ops import Context, Op
from cadenza.langgraph.checkpoint._runlog import next_version
from cadenza.langgraph.checkpoint._sql import Dialect

T = TypeVar("T")


class CadenzaSaverBase(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer whose checkpoints live in Cadenza's store (see the package).

    ``full_every`` bounds delta chains: a list channel is stored in full again after that many
    versions stored as appended items (reading a value reads at most that many rows)."""

    _dialect: ClassVar[Dialect]

    def __init__(
        self,
        *,
        serde: SerializerProtocol | None = None,
        full_every: int = DEFAULT_FULL_EVERY,
    ) -> None:
        super().__init__(serde=serde)
        if full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {full_every}")
        self.full_every = full_every
        self._memo = ListMemo()
        self._heads: HeadCache | None = None  # a saver that can check them sets it

    @property
    def _ctx(self) -> Context:
        # built per call: ``with_allowlist`` clones the saver with another serde
        return Context(self._dialect, self.serde, self._memo, self.full_every, self._heads)

    def _run(self, op: Op[T], *, write: bool) -> T:
        raise NotImplementedError

    async def _arun(self, op: Op[T], *, write: bool) -> T:
        raise NotImplementedError

    # -- sync ----------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(_ops.get_tuple(self._ctx, config), write=False)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        ctx = self._ctx
        rows = self._run(_ops.list_rows(ctx, config, filter, before, limit), write=False)
        for row in rows:
            yield self._run(_ops.load_tuple(ctx, row, remember=False), write=False)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        op = _ops.put(self._ctx, config, checkpoint, metadata, new_versions)
        return self._run(op, write=True)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run(_ops.put_writes(self._ctx, config, writes, task_id, task_path), write=True)

    def save_batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Make several ``put``/``put_writes`` calls, given as ``(method, args)``, in one
        transaction: all are stored or, on an error, none. The facade's background writer
        uses it to store the checkpoints of several steps with one commit."""
        self._run(self._batch(calls), write=True)

    def _batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> Op[list[Any]]:
        ctx = self._ctx
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
        self._run(_maintenance.delete_thread(self._ctx, thread_id), write=True)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._run(_maintenance.delete_for_runs(self._ctx, run_ids), write=True)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        op = _maintenance.copy_thread(self._ctx, source_thread_id, target_thread_id)
        self._run(op, write=True)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"`` keeps the latest checkpoint of each namespace of each thread (with
        its pending writes and the blobs it reads) and deletes the older ones; ``"delete"``
        deletes the threads' checkpoints. The runs' logs are kept, with the deletion in them."""
        self._run(_maintenance.prune(self._ctx, thread_ids, strategy), write=True)

    # -- async ---------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun(_ops.get_tuple(self._ctx, config), write=False)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        ctx = self._ctx
        rows = await self._arun(_ops.list_rows(ctx, config, filter, before, limit), write=False)
        for row in rows:
            yield await self._arun(_ops.load_tuple(ctx, row, remember=False), write=False)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        op = _ops.put(self._ctx, config, checkpoint, metadata, new_versions)
        return await self._arun(op, write=True)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        op = _ops.put_writes(self._ctx, config, writes, task_id, task_path)
        await self._arun(op, write=True)

    async def asave_batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """:meth:`save_batch` for async callers."""
        await self._arun(self._batch(calls), write=True)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun(_maintenance.delete_thread(self._ctx, thread_id), write=True)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._arun(_maintenance.delete_for_runs(self._ctx, run_ids), write=True)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        op = _maintenance.copy_thread(self._ctx, source_thread_id, target_thread_id)
        await self._arun(op, write=True)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._arun(_maintenance.prune(self._ctx, thread_ids, strategy), write=True)

    # -- versions ------------------------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """See :func:`~._runlog.next_version`."""
        return next_version(current)
