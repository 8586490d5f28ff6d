"""How a run's calls reach its checkpointer: made at once (``"sync"``, ``"exit"``), handed to
the saver's background writer (``"async"`` with the sync driver, see ``writeback.py``), or
queued for the async driver, which awaits their async forms; and, with ``"sync"`` on a saver
that takes batches, a lone task's writes held back to be stored with the step's checkpoint in
one transaction."""

from __future__ import annotations

from inspect import signature
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._engine.algo import task_path_str
from cadenza.langgraph._engine.writeback import AsyncWriteBehind, Owner, writer_for

if TYPE_CHECKING:
    from cadenza.langgraph._engine.task import Task

__all__ = ("SaverCalls", "accepts_task_path")

Call = tuple[str, tuple[Any, ...]]

_ACCEPTS_PATH: dict[type, bool] = {}


def accepts_task_path(saver: Any) -> bool:
    cls = type(saver)
    if cls not in _ACCEPTS_PATH:
        try:
            _ACCEPTS_PATH[cls] = "task_path" in signature(saver.put_writes).parameters
        except (TypeError, ValueError):
            _ACCEPTS_PATH[cls] = False
    return _ACCEPTS_PATH[cls]


class SaverCalls:
    """The calls one run makes to its saver (see the module docstring)."""

    __slots__ = (
        "batches", "behind", "held", "holding", "io", "owner", "saver", "task_paths", "writer",
    )  # fmt: skip

    def __init__(self, saver: Any, *, durability: str, is_async: bool) -> None:
        self.saver = saver
        self.task_paths = accepts_task_path(saver)
        # the async driver: calls queued here, awaited by the driver before the next step
        self.io: list[Call] | None = [] if is_async else None
        # "async" durability, sync driver: the saver's background writer makes the calls
        self.writer = writer_for(saver) if durability == "async" and not is_async else None
        self.owner = Owner()
        # the same with the async driver: a task of the event loop awaits the saver's calls
        self.behind = AsyncWriteBehind(saver) if durability == "async" and is_async else None
        # "sync" on a saver that takes batches: a lone task's writes wait for the step's
        # checkpoint and are stored with it, in one transaction (see ``hold_writes``)
        self.batches = (
            self.writer is None
            and not is_async
            and durability != "exit"
            and callable(getattr(saver, "save_batch", None))
        )
        self.holding = False
        self.held: list[Call] = []

    @property
    def behind_the_run(self) -> bool:
        """Whether calls are made after they return (by a writer): what they pass must not
        change meanwhile."""
        return self.writer is not None or self.behind is not None

    def put(self, *args: Any) -> None:
        self.save("put", *args)

    def put_writes(
        self, config: Any, writes: list[tuple[str, Any]], task_id: str, task: Task | None
    ) -> None:
        """Store a task's writes (with the task's path where the saver takes one)."""
        if self.task_paths:
            path = task_path_str(task.path) if task is not None else ""
            self.save("put_writes", config, writes, task_id, path)
        else:
            self.save("put_writes", config, writes, task_id)

    def save(self, method: str, *args: Any) -> None:
        """Call the saver now ("sync", "exit"), hand the call to the saver's background
        writer ("async"), or (async driver) queue it for its async form, which the driver
        awaits before the next step."""
        if self.io is not None:
            self.io.append((method, args))
        elif self.writer is not None:
            self.writer.submit(self.owner, method, args)
        elif self.holding or self.held:
            self.held.append((method, args))
            if not (self.holding and method == "put_writes"):
                self.release_held()
        else:
            getattr(self.saver, method)(*args)

    def hold_writes(self) -> None:
        """The writes of the task about to be recorded, the step's only one, are stored with
        the step's checkpoint, which follows at once: a separate commit for them would
        protect nothing (no other task of the step runs meanwhile) and cost one."""
        self.holding = self.batches

    def release_held(self) -> None:
        """Store the held calls (and the one that released them) together."""
        held, self.held, self.holding = self.held, [], False
        if len(held) > 1:
            self.saver.save_batch(held)
        elif held:
            method, args = held[0]
            getattr(self.saver, method)(*args)

    def settle(self) -> None:
        """Wait until the calls handed to the background writer are stored; raise the first
        error one of them met."""
        if self.writer is not None:
            self.writer.flush(self.owner)

    async def asettle(self) -> None:
        """``settle`` for the async driver."""
        if self.behind is not None:
            await self.behind.settle()

    def take_io(self) -> list[Call]:
        """The calls queued for the async driver since it last took them."""
        io = self.io or []
        self.io = []
        return io
