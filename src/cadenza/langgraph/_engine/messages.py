"""The ``messages`` stream mode: chat-model tokens as they stream, and the messages nodes
return, each with the metadata of the node that produced it.

Chat models report through langchain-core callbacks, so the running node's config (with
this handler among its callbacks) is made langchain-core's current config while the node
runs; a model called without an explicit config picks it up. Needs langchain-core, which
is imported only when a run asks for this mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from cadenza.langgraph._keys import NS_SEP, TAG_HIDDEN, TAG_NOSTREAM
from cadenza.langgraph.types import Command

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cadenza.langgraph._engine.task import Task

__all__ = ("make_handler", "node_run")

Emit = Callable[[tuple[tuple[str, ...], str, Any]], None]


def _namespace(metadata: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(metadata.get("langgraph_checkpoint_ns", "")).split(NS_SEP))[:-1]


def _values(obj: Any) -> Sequence[Any]:
    if isinstance(obj, dict):
        return list(obj.values())
    if hasattr(obj, "model_fields") and not isinstance(obj, type):
        return [getattr(obj, k) for k in type(obj).model_fields]
    if is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name) for f in fields(obj)]
    return ()


def make_handler(emit: Emit, subgraphs: bool) -> Any:
    """A callback handler that sends ``(message, metadata)`` chunks to ``emit``."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk

    try:
        from langchain_core.tracers._streaming import _StreamingCallbackHandler
    except ImportError:  # pragma: no cover - older langchain-core
        _StreamingCallbackHandler = object  # type: ignore[misc,assignment]

    class MessagesHandler(BaseCallbackHandler, _StreamingCallbackHandler):  # type: ignore[misc,valid-type]
        run_inline = True

        def __init__(self) -> None:
            self.runs: dict[UUID, tuple[tuple[str, ...], dict[str, Any]]] = {}
            self.seen: set[Any] = set()

        def _send(
            self, meta: tuple[tuple[str, ...], dict[str, Any]], message: Any, dedupe: bool = False
        ) -> None:
            if dedupe and message.id in self.seen:
                return
            if message.id is None:
                message.id = str(uuid4())
            self.seen.add(message.id)
            emit((meta[0], "messages", (message, meta[1])))

        def _wanted(self, metadata: dict[str, Any] | None) -> tuple[str, ...] | None:
            if not metadata:
                return None
            ns = _namespace(metadata)
            if not subgraphs and ns:
                return None
            return ns

        def tap_output_iter(self, run_id: UUID, output: Iterator[Any]) -> Iterator[Any]:
            return output

        def tap_output_aiter(self, run_id: UUID, output: Any) -> Any:
            return output

        def on_chat_model_start(
            self,
            serialized: dict[str, Any],
            messages: list[list[Any]],
            *,
            run_id: UUID,
            tags: list[str] | None = None,
            metadata: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if tags and TAG_NOSTREAM in tags:
                return
            if (ns := self._wanted(metadata)) is not None:
                self.runs[run_id] = (ns, dict(metadata or {}))

        def on_llm_new_token(
            self, token: str, *, chunk: Any = None, run_id: UUID, **kwargs: Any
        ) -> None:
            if isinstance(chunk, ChatGenerationChunk) and (meta := self.runs.get(run_id)):
                self._send(meta, chunk.message)

        def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
            if (meta := self.runs.pop(run_id, None)) and response.generations:
                first = response.generations[0]
                if first and isinstance(first[0], ChatGeneration):
                    self._send(meta, first[0].message, dedupe=True)

        def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
            self.runs.pop(run_id, None)

        # nodes report through ``node_run``, not through chain callbacks
        def node_start(self, task: Task) -> tuple[tuple[str, ...], dict[str, Any]] | None:
            metadata = task.config["metadata"]
            if TAG_HIDDEN in task.node.tags or task.node.hidden:
                return None
            if (ns := self._wanted(metadata)) is None:
                return None
            for value in _values(task.input):
                items = (
                    value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
                )
                for item in items:
                    if isinstance(item, BaseMessage) and item.id is not None:
                        self.seen.add(item.id)
            return ns, dict(metadata)

        def node_end(self, meta: tuple[tuple[str, ...], dict[str, Any]], output: Any) -> None:
            if isinstance(output, Command):
                self._find(meta, output.update)
            elif isinstance(output, Sequence) and any(isinstance(v, Command) for v in output):
                for value in output:
                    self._find(meta, value.update if isinstance(value, Command) else value)
            else:
                self._find(meta, output)

        def _find(self, meta: tuple[tuple[str, ...], dict[str, Any]], value: Any) -> None:
            if isinstance(value, BaseMessage):
                self._send(meta, value, dedupe=True)
                return
            if isinstance(value, Sequence) and not isinstance(value, str):
                for item in value:
                    if isinstance(item, BaseMessage):
                        self._send(meta, item, dedupe=True)
                return
            for item in _values(value):
                if isinstance(item, BaseMessage):
                    self._send(meta, item, dedupe=True)
                elif isinstance(item, Sequence) and not isinstance(item, str):
                    for inner in item:
                        if isinstance(inner, BaseMessage):
                            self._send(meta, inner, dedupe=True)

    return MessagesHandler()


@contextmanager
def node_run(task: Task) -> Iterator[Callable[[Any], None]]:
    """Make the task's config langchain-core's current config while the node runs; the
    yielded function reports the node's output."""
    from langchain_core.runnables.config import var_child_runnable_config

    handler = task.loop.messages
    meta = handler.node_start(task) if handler is not None else None
    token = var_child_runnable_config.set(task.config)

    def done(output: Any) -> None:
        if meta is not None:
            handler.node_end(meta, output)

    try:
        yield done
    finally:
        var_child_runnable_config.reset(token)
