"""Differential harness: the same graph built from ``langgraph`` and from
``cadenza.langgraph``, run the same way, observed the same way, compared.

A case is a ``build(lib, checkpointer)`` function (``lib`` holds either side's modules)
plus a script of operations. Each script runs once per variant and side, on a fresh thread:
with ``invoke``, with ``stream`` (``updates``, ``values`` and ``custom`` at once), with
``ainvoke`` and with ``astream``. What is compared: each operation's result or raised
exception (type and message), the stream chunks, and with a checkpointer the thread's
state and history (values, next, tasks, metadata source/step/parents).

Ids, timestamps and the order of chunks produced inside one step (tasks of a step run
concurrently in LangGraph) are normalised away. Checkpointed runs use
``durability="sync"`` on both sides: LangGraph's default stores a checkpoint while the next
step runs, and can store a join's state as a later step left it."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

_counter = itertools.count()

MODULES = {
    "graph": "graph",
    "types": "types",
    "errors": "errors",
    "config": "config",
    "memory": "checkpoint.memory",
    "managed": "managed",
    "constants": "constants",
}


class Lib(SimpleNamespace):
    """One side's modules: ``lib.graph.StateGraph``, ``lib.types.Command``..."""

    side: str

    def __getattr__(self, name: str) -> Any:
        # the modules that need langchain-core load on first use
        lazy = {"message": "graph.message", "prebuilt": "prebuilt"}
        if name in lazy:
            module = importlib.import_module(f"{self.prefix}.{lazy[name]}")
            setattr(self, name, module)
            return module
        raise AttributeError(name)


def load(side: str) -> Lib:
    prefix = "langgraph" if side == "langgraph" else "cadenza.langgraph"
    lib = Lib(side=side, prefix=prefix)
    for attr, path in MODULES.items():
        setattr(lib, attr, importlib.import_module(f"{prefix}.{path}"))
    return lib


SIDES = ("langgraph", "cadenza")


@dataclass
class Op:
    """One operation of a script: ``run(lib, app, config)`` returns what is compared."""

    label: str
    run: Callable[[Lib, Any, dict[str, Any]], Any]
    streams: bool = False  # an invocation that the stream variants run as a stream
    input: Callable[[Lib], Any] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def invocation(input: Any, **kwargs: Any) -> Op:
    """Run the graph with ``input`` (a value, or ``lambda lib: ...`` for ``Command``s)."""
    make = input if callable(input) else (lambda lib: input)
    return Op("run", lambda lib, app, cfg: None, streams=True, input=make, kwargs=kwargs)


def operation(label: str, fn: Callable[[Lib, Any, dict[str, Any]], Any]) -> Op:
    return Op(label, fn)


def state_op() -> Op:
    return Op("get_state", lambda lib, app, cfg: snapshot(app.get_state(cfg)))


def history_op(**kwargs: Any) -> Op:
    return Op(
        "history", lambda lib, app, cfg: [snapshot(s) for s in app.get_state_history(cfg, **kwargs)]
    )


@dataclass
class Case:
    name: str
    build: Callable[[Lib, Any], Any]  # (lib, checkpointer or None) -> compiled graph
    script: Sequence[Op]
    checkpointer: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    run_async: bool = True
    history: bool = True
    compare_messages: bool = True
    only: tuple[str, ...] = ()  # limit to these variants


# ---------------------------------------------------------------------------- normalising


def norm(value: Any) -> Any:
    """A comparable form: engine-specific classes, ids and timestamps removed."""
    cls = type(value).__name__
    if isinstance(value, dict):
        out = {str(k): norm(v) for k, v in value.items()}
        if isinstance(out.get("__interrupt__"), list):
            # interrupts of concurrent tasks arrive in the order the tasks finish
            out["__interrupt__"] = sorted(out["__interrupt__"], key=repr)
        return out
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return [norm(v) for v in value]
    if cls == "Interrupt":
        return ("Interrupt", norm(value.value))
    if cls == "Send":
        return ("Send", value.node, norm(value.arg))
    if cls == "Command":
        return ("Command", value.graph, norm(value.update), norm(value.resume), norm(value.goto))
    if cls == "Overwrite":
        return ("Overwrite", norm(value.value))
    if hasattr(value, "tool_calls") or cls.endswith("Message") or cls.endswith("MessageChunk"):
        calls = [(c["name"], norm(c["args"])) for c in getattr(value, "tool_calls", []) or []]
        return (
            "msg",
            getattr(value, "type", cls),
            norm(value.content),
            calls,
            getattr(value, "name", None),
        )
    if isinstance(value, BaseException):
        return ("error", cls, str(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (cls, norm(dataclasses.asdict(value)))
    if hasattr(value, "model_dump"):
        return (cls, norm(value.model_dump()))
    if hasattr(value, "_fields"):
        return (cls, [norm(v) for v in value])
    return value


def snapshot(s: Any) -> dict[str, Any]:
    meta = s.metadata or {}
    return {
        "values": norm(s.values),
        "next": tuple(s.next),
        "metadata": {
            "source": meta.get("source"),
            "step": meta.get("step"),
            "parents": sorted(meta.get("parents", {})),
        },
        "tasks": [
            (
                t.name,
                norm(t.path),
                None if t.error is None else type(t.error).__name__,
                norm(t.interrupts),
                norm(t.result),
            )
            for t in s.tasks
        ],
        "interrupts": norm(s.interrupts),
        "has_state": [t.state is not None for t in s.tasks],
    }


def canonical_stream(chunks: list[Any]) -> list[Any]:
    """Chunks in order, except that chunks between two ``values`` chunks (one step's task
    results, and the values shown when one of them pauses) are sorted, since LangGraph's
    concurrent tasks finish in any order."""
    out: list[Any] = []
    segment: list[Any] = []
    for chunk in chunks:
        item = norm(chunk)
        boundary = (
            isinstance(chunk, tuple)
            and chunk[-2:-1] == ("values",)
            and not (isinstance(chunk[-1], dict) and "__interrupt__" in chunk[-1])
        )
        if boundary:
            out.extend(sorted(segment, key=repr))
            segment = []
            out.append(item)
        else:
            segment.append(item)
    out.extend(sorted(segment, key=repr))
    return out


def _error(exc: BaseException, messages: bool) -> Any:
    return ("raised", type(exc).__name__, str(exc) if messages else None)


# ---------------------------------------------------------------------------- running


def _new_config(case: Case, variant: str) -> dict[str, Any]:
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in case.config.items()}
    if case.checkpointer:
        conf = dict(config.get("configurable", {}))
        conf["thread_id"] = f"{case.name}-{variant}-{next(_counter)}"
        config["configurable"] = conf
    return config


def _build(case: Case, lib: Lib) -> tuple[Any, Any]:
    saver = lib.memory.InMemorySaver() if case.checkpointer else None
    return case.build(lib, saver), saver


MODES = ["updates", "values", "custom"]


def run_side(case: Case, lib: Lib, variant: str) -> list[Any]:
    """Everything observed when ``variant`` (invoke/stream/astream) runs the script."""
    try:
        app, _ = _build(case, lib)
    except Exception as exc:
        return [("build", _error(exc, case.compare_messages))]
    config = _new_config(case, variant)
    seen: list[Any] = []
    for op in case.script:
        try:
            if op.streams:
                seen.append((op.label, _run(case, lib, app, config, op, variant)))
            else:
                seen.append((op.label, op.run(lib, app, config)))
        except Exception as exc:
            seen.append((op.label, _error(exc, case.compare_messages)))
    if case.checkpointer and case.history:
        for label, read in (
            ("final_state", lambda: snapshot(app.get_state(config))),
            ("history", lambda: [snapshot(s) for s in app.get_state_history(config)]),
        ):
            try:
                seen.append((label, read()))
            except Exception as exc:
                seen.append((label, _error(exc, case.compare_messages)))
    return seen


def _run(case: Case, lib: Lib, app: Any, config: dict[str, Any], op: Op, variant: str) -> Any:
    value = op.input(lib) if op.input else None
    kwargs = dict(op.kwargs)
    if case.checkpointer:
        # LangGraph's default ("async") stores a checkpoint while the next step runs, so a
        # join's value can be stored as a later step left it; "sync" is deterministic.
        kwargs.setdefault("durability", "sync")
    if variant == "invoke":
        return norm(app.invoke(value, config, **kwargs))
    if variant == "ainvoke":
        return norm(asyncio.run(app.ainvoke(value, config, **kwargs)))
    chunks: list[Any] = []
    if variant == "stream":
        try:
            for chunk in app.stream(value, config, stream_mode=MODES, **kwargs):
                chunks.append(chunk)
        except Exception as exc:
            return [*canonical_stream(chunks), _error(exc, case.compare_messages)]
        return canonical_stream(chunks)

    async def consume() -> None:
        async for chunk in app.astream(value, config, stream_mode=MODES, **kwargs):
            chunks.append(chunk)

    try:
        asyncio.run(consume())
    except Exception as exc:
        return [*canonical_stream(chunks), _error(exc, case.compare_messages)]
    return canonical_stream(chunks)


def variants(case: Case) -> list[str]:
    every = ["invoke", "stream", "ainvoke", "astream"] if case.run_async else ["invoke", "stream"]
    return [v for v in every if not case.only or v in case.only]


def compare(case: Case, variant: str) -> tuple[list[Any], list[Any]]:
    reference = run_side(case, load("langgraph"), variant)
    facade = run_side(case, load("cadenza"), variant)
    return reference, facade
