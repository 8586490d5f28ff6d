"""What a running node can reach through its task: its config, the ``custom`` stream
writer, its ``Runtime``, and the placement of a subgraph it runs. Each depends on where the
run is (its :class:`~.loop_position.Position`) and on what the run was given."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._keys import CHECKPOINT_ID, CHECKPOINT_MAP, CHECKPOINT_NS, CONF, NS_SEP
from cadenza.langgraph.runtime import ExecutionInfo, Runtime

if TYPE_CHECKING:
    from cadenza.langgraph._engine.loop_position import Position
    from cadenza.langgraph._engine.loop_stream import Stream
    from cadenza.langgraph._engine.task import Task

__all__ = ("TaskServices",)


def _no_op(_chunk: Any) -> None:
    pass


def _with_handler(callbacks: Any, handler: Any) -> Any:
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager


class TaskServices:
    """What the tasks of one run reach (see the module docstring). ``messages`` is the run's
    handler of the ``messages`` stream (``None``: not streamed); ``checkpointed``: whether the
    run has a saver (then subgraphs learn their parents' checkpoints)."""

    __slots__ = (
        "checkpointed",
        "config",
        "context",
        "messages",
        "ns",
        "position",
        "store",
        "stream",
    )

    def __init__(
        self,
        config: dict[str, Any],
        ns: str,
        position: Position,
        stream: Stream,
        *,
        checkpointed: bool,
        context: Any,
        store: Any,
        messages: Any,
    ) -> None:
        self.config = config
        self.ns = ns
        self.position = position
        self.stream = stream
        self.checkpointed = checkpointed
        self.context = context
        self.store = store
        self.messages = messages

    def task_config(self, task: Task) -> dict[str, Any]:
        """The ``RunnableConfig`` a node sees (LangGraph's keys, none of its internals)."""
        base = self.config
        metadata = {
            **base["metadata"],
            "langgraph_step": self.position.step,
            "langgraph_node": task.name,
            "langgraph_triggers": task.triggers,
            "langgraph_path": task.path,
            "langgraph_checkpoint_ns": task.ns,
        }
        if task.node.metadata:
            metadata.update(task.node.metadata)
        conf = {**base[CONF], CHECKPOINT_NS: task.ns, CHECKPOINT_ID: None}
        if self.checkpointed:
            conf[CHECKPOINT_MAP] = {
                **base[CONF].get(CHECKPOINT_MAP, {}),
                self.ns: self.position.checkpoint["id"],
            }
        tags = base["tags"]
        if task.node.tags:
            tags = [*tags, *task.node.tags]
        config = {
            **base,
            "tags": tags,
            "metadata": metadata,
            CONF: conf,
            "run_name": task.name,
        }
        if self.messages is not None:
            config["callbacks"] = _with_handler(base.get("callbacks"), self.messages)
        return config

    def custom_writer(self, task: Task) -> Callable[[Any], None]:
        out = self.stream.out
        if out is None or "custom" not in self.stream.modes:
            return _no_op
        ns = tuple(task.ns.split(NS_SEP)[:-1])

        def write(chunk: Any) -> None:
            out.append((ns, "custom", chunk))

        return write

    def runtime(self, task: Task) -> Runtime[Any]:
        return Runtime(
            context=self.context,
            store=self.store,
            stream_writer=task.writer,
            previous=None,
            execution_info=ExecutionInfo(
                checkpoint_id=self.position.checkpoint["id"],
                checkpoint_ns=task.ns,
                task_id=task.id,
                thread_id=self.config[CONF].get("thread_id"),
            ),
        )

    def child_config(self, task: Task) -> dict[str, Any]:
        """The ``configurable`` entries that place a subgraph run by ``task``: its
        namespace (numbered from the second call in one task) and its parents' checkpoints."""
        ns = task.ns
        if task.subgraph_calls:
            ns = f"{ns}{NS_SEP}{task.subgraph_calls}"
        task.subgraph_calls += 1
        conf: dict[str, Any] = {CHECKPOINT_NS: ns, CHECKPOINT_ID: None}
        if self.checkpointed:
            conf[CHECKPOINT_MAP] = {
                **self.config[CONF].get(CHECKPOINT_MAP, {}),
                self.ns: self.position.checkpoint["id"],
            }
        return conf
