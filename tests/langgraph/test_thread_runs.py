"""Facade threads as Cadenza runs: observers told of every event a checkpointer stores (as an
engine tells them of a native run's), the in-memory checkpointer's threads as runs of a
``MemoryStore``, and the checked lifecycle of a thread's status."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import empty_checkpoint

from cadenza.core.errors import IllegalTransition, StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint._lifecycle import Cause, check_thread_transition
from cadenza.langgraph.checkpoint.memory import InMemorySaver
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
from cadenza.langgraph.graph import END, START, MessagesState, StateGraph
from cadenza.langgraph.types import Command, interrupt
from cadenza.observe.audit import verify
from cadenza.store.base import RunRecord
from cadenza.store.memory import MemoryStore
from cadenza.store.sqlite import SQLiteStore

pytest.importorskip(
    "psycopg", reason="the postgres extra is not installed: pip install '.[postgres]'"
)

from tests.langgraph.checkpoint_dbs import KINDS, cadenza_store, database, saver

S = WorkflowStatus


class Recording:
    """A metrics-ready observer: counts events by (workflow, type), keeps them in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()  # savers may call it from their threads

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        with self.lock:
            self.events.append((workflow, event))
            self.counts[(workflow, str(event.type))] += 1

    def of(self, thread: str) -> list[Event]:
        return [e for _, e in self.events if e.run_id == thread]


def build(checkpointer: Any, **compile: Any) -> Any:
    """The facade's ``START -> model -> review -> END``; ``review`` asks a person."""

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}

    def review(state: MessagesState) -> dict[str, Any]:
        decision = interrupt({"question": "send it?"})
        return {"messages": [AIMessage(f"review: {decision}")]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", model)
    graph.add_node("review", review)
    graph.add_edge(START, "model")
    graph.add_edge("model", "review")
    graph.add_edge("review", END)
    return graph.compile(checkpointer=checkpointer, **compile)


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "metadata": {"workflow": "support-bot"}}


async def invoke(kind: str, app: Any, value: Any, cfg: dict[str, Any]) -> Any:
    if KINDS[kind][1]:
        return await app.ainvoke(value, cfg)
    return await asyncio.to_thread(app.invoke, value, cfg)


# -- observers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
async def test_observers_of_a_facade_graph_are_told_every_event_of_its_threads(
    kind: str, tmp_path: Path
) -> None:
    seen = Recording()
    async with database(kind, tmp_path) as where, saver(kind, where) as s:
        app = build(s, observers=[seen])
        await invoke(kind, app, {"messages": [("user", "hi")]}, config("t1"))
        await invoke(kind, app, Command(resume="yes"), config("t1"))
        await invoke(kind, app, {"messages": [("user", "again")]}, config("t1"))
        assert s.observers == ()  # the graph has a clone: the saver itself tells no one
        async with cadenza_store(kind, where) as store:
            stored = await store.read_events(RunId("t1"))
    assert verify(stored) is None
    told = seen.of("t1")
    assert [(e.seq, e.type, e.path, e.data) for e in told] == [
        (e.seq, e.type, e.path, e.data) for e in stored
    ]
    assert {workflow for workflow, _ in seen.events} == {"support-bot"}
    assert seen.counts[("support-bot", "run_created")] == 1
    statuses = [(e.data["from"], e.data["to"]) for e in told if e.type == EventType.STATUS]
    assert statuses == [
        ("RUNNING", "WAITING_APPROVAL"),
        ("WAITING_APPROVAL", "COMPLETED"),
        ("COMPLETED", "RUNNING"),  # a new input: the thread's next turn
        ("RUNNING", "WAITING_APPROVAL"),
    ]


def test_observers_are_told_once_the_events_are_stored(tmp_path: Path) -> None:
    path = str(tmp_path / "committed.db")
    stored_when_told: list[bool] = []

    class Reader:
        def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
            with sqlite3.connect(path) as other:  # another connection sees committed rows only
                row = other.execute(
                    "SELECT 1 FROM events WHERE run_id = ? AND seq = ?", (event.run_id, event.seq)
                ).fetchone()
            stored_when_told.append(row is not None)

    with SqliteSaver.from_conn_string(path, observers=[Reader()]) as s:
        build(s).invoke({"messages": [("user", "hi")]}, config("t"))  # durability "async"
    assert stored_when_told and all(stored_when_told)


def test_an_observer_that_raises_does_not_fail_the_graph(tmp_path: Path) -> None:
    class Broken:
        def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
            raise RuntimeError("observer bug")

    seen = Recording()
    with SqliteSaver.from_conn_string(str(tmp_path / "broken.db")) as s:
        app = build(s, observers=[Broken(), seen])
        out = app.invoke({"messages": [("user", "hi")]}, config("t"))
    assert out["__interrupt__"]
    assert seen.counts[("support-bot", "step_completed")] == 3  # input, model, then review


def test_observers_need_one_of_cadenzas_checkpointers() -> None:
    from langgraph.checkpoint.memory import InMemorySaver as LangGraphSaver

    with pytest.raises(TypeError, match="Cadenza's checkpointers"):
        build(LangGraphSaver(), observers=[Recording()])
    with pytest.raises(TypeError, match="Cadenza's checkpointers"):
        build(None, observers=[Recording()])
    build(None, observers=[])  # none asked for: nothing needed


def test_a_subgraph_s_checkpoints_are_told_with_its_parent_thread() -> None:
    seen = Recording()

    def inner_node(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("inner")]}

    inner = StateGraph(MessagesState)
    inner.add_node("inner_node", inner_node)
    inner.add_edge(START, "inner_node")
    child = inner.compile()
    outer = StateGraph(MessagesState)
    outer.add_node("child", child)
    outer.add_edge(START, "child")
    app = outer.compile(checkpointer=InMemorySaver(), observers=[seen])
    app.invoke({"messages": [("user", "hi")]}, config("parent"))
    paths = [e.path for e in seen.of("parent") if e.type == EventType.STEP_COMPLETED]
    assert any(p.startswith("child:") for p in paths), paths
    assert {e.run_id for _, e in seen.events} == {"parent"}


# -- the in-memory checkpointer -----------------------------------------------------------------


async def test_in_memory_threads_are_runs_of_a_memory_store() -> None:
    store = MemoryStore()
    seen = Recording()
    s = InMemorySaver(store=store, observers=[seen])
    app = build(s)
    app.invoke({"messages": [("user", "hi")]}, config("t1"))
    assert (await store.get_run(RunId("t1"))).status == S.WAITING_APPROVAL
    out = await app.ainvoke(Command(resume="ok"), config("t1"))
    assert [m.content for m in out["messages"]] == ["hi", "answer 1", "review: ok"]
    [run] = await store.list_runs()
    assert (run.run_id, run.workflow, run.version, run.status) == (
        "t1",
        "support-bot",
        "langgraph",
        S.COMPLETED,
    )
    events = await store.read_events(RunId("t1"))
    assert verify(events) is None
    history = [
        s.config["configurable"]["checkpoint_id"] for s in app.get_state_history(config("t1"))
    ]
    recorded = [e.data["checkpoint_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert recorded == list(reversed(history))
    assert [e.seq for e in seen.of("t1")] == [e.seq for e in events]

    s.delete_thread("t1")
    run = await store.get_run(RunId("t1"))
    assert run.status == S.CANCELLED
    last = (await store.read_events(RunId("t1")))[-1]
    assert last.data["reason"].startswith("delete_thread: ")


async def test_the_in_memory_saver_refuses_a_native_run_s_id() -> None:
    store = MemoryStore()
    await store.create_run(
        RunRecord(run_id=RunId("taken"), workflow="orders", version="v1"),
        [Event(RunId("taken"), 1, EventType.RUN_CREATED)],
    )
    s = InMemorySaver(store=store)
    with pytest.raises(StoreError, match="not a LangGraph thread"):
        build(s).invoke({"messages": [("user", "hi")]}, config("taken"))
    assert s.get_tuple(config("taken")) is None  # nothing stored for it


# -- the thread lifecycle -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "cause"),
    [
        (S.COMPLETED, S.RUNNING, Cause.CHECKPOINT),  # the next input
        (S.FAILED, S.RUNNING, Cause.CHECKPOINT),  # resumed after an error
        (S.WAITING_APPROVAL, S.RUNNING, Cause.CHECKPOINT),
        (S.COMPLETED, S.WAITING_APPROVAL, Cause.WRITES),  # an earlier checkpoint replayed
        (S.RUNNING, S.CANCELLED, Cause.DELETION),
        (S.CANCELLED, S.RUNNING, Cause.CHECKPOINT),  # a deleted thread's id used again
        (S.CANCELLED, S.COMPLETED, Cause.COPY),
        (S.RUNNING, S.RUNNING, Cause.DELETION),  # older checkpoints pruned: recorded, no move
    ],
)
def test_a_thread_may_move(current: WorkflowStatus, new: WorkflowStatus, cause: Cause) -> None:
    check_thread_transition("t", current, new, cause)


@pytest.mark.parametrize(
    ("current", "new", "cause", "why"),
    [
        (S.RUNNING, S.CANCELLED, Cause.CHECKPOINT, "checkpoint cannot move it from RUNNING to"),
        (S.WAITING_APPROVAL, S.RUNNING, Cause.WRITES, "an interrupt or error written for"),
        (S.FAILED, S.COMPLETED, Cause.WRITES, r"what can: a new checkpoint, deleting"),
        (S.CANCELLED, S.FAILED, Cause.WRITES, "copying another thread"),
        (S.PAUSED, S.RUNNING, Cause.CHECKPOINT, "PAUSED is not a thread's status"),
        (S.RUNNING, S.ROLLBACK, Cause.CHECKPOINT, "ROLLBACK is not a thread's status"),
        (S.INITIALIZING, S.RUNNING, Cause.CHECKPOINT, "INITIALIZING is not"),
    ],
)
def test_a_thread_may_not_move(
    current: WorkflowStatus, new: WorkflowStatus, cause: Cause, why: str
) -> None:
    with pytest.raises(IllegalTransition, match=why):
        check_thread_transition("t", current, new, cause)


def _put(s: SqliteSaver, thread: str, step: int, *, due: bool) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = f"{step:06d}"
    if due:
        checkpoint["channel_values"] = {"branch:to:node": None}
        checkpoint["channel_versions"] = {"branch:to:node": f"{step:016d}.0"}
    cfg = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return s.put(cfg, checkpoint, {"source": "loop", "step": step}, {})


async def test_a_status_no_thread_has_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    path = str(tmp_path / "edited.db")
    with SqliteSaver.from_conn_string(path) as s:
        _put(s, "t", 0, due=True)
    with sqlite3.connect(path) as conn:  # someone edits the run's row by hand
        conn.execute("UPDATE runs SET status = 'PAUSED' WHERE run_id = 't'")
    with SqliteSaver.from_conn_string(path) as s:
        with pytest.raises(IllegalTransition, match="PAUSED is not a thread's status"):
            _put(s, "t", 1, due=False)
        assert [c.config["configurable"]["checkpoint_id"] for c in s.list(config("t"))] == [
            "000000"
        ]
    async with SQLiteStore(path) as store:
        events = await store.read_events(RunId("t"))
    assert [e.type for e in events] == [EventType.RUN_CREATED, EventType.STEP_COMPLETED]


async def test_a_completed_thread_takes_its_next_turn(tmp_path: Path) -> None:
    path = str(tmp_path / "turns.db")
    with SqliteSaver.from_conn_string(path) as s:
        _put(s, "t", 0, due=True)
        _put(s, "t", 1, due=False)
        _put(s, "t", 2, due=True)  # the next input
        _put(s, "t", 3, due=False)
    async with SQLiteStore(path) as store:
        run = await store.get_run(RunId("t"))
        events = await store.read_events(RunId("t"))
    assert run.status == S.COMPLETED and not run.error
    statuses = [(e.data["from"], e.data["to"]) for e in events if e.type == EventType.STATUS]
    assert statuses == [
        ("RUNNING", "COMPLETED"),
        ("COMPLETED", "RUNNING"),
        ("RUNNING", "COMPLETED"),
    ]
