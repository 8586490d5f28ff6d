"""``durability="async"`` (the default): checkpoints written behind the run by the saver's
background writer, in batches, and all stored by the time ``invoke`` returns."""

from __future__ import annotations

import operator
import sqlite3
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from cadenza.langgraph._engine import writeback
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
from cadenza.langgraph.graph import END, START, StateGraph
from cadenza.langgraph.types import Send
from tests.langgraph.test_durability import kill_then_resume


class S(TypedDict):
    n: int
    out: Annotated[list[int], operator.add]


def _chain(saver: Any, length: int = 5) -> Any:
    g = StateGraph(S)
    previous = START
    for i in range(length):
        g.add_node(f"s{i}", lambda s, i=i: {"n": s["n"] + 1, "out": [i]})
        g.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    g.add_edge(previous, END)
    return g.compile(checkpointer=saver)


def _fanout(saver: Any) -> Any:
    g = StateGraph(S)
    g.add_node("plan", lambda s: {"n": 3})
    g.add_node("work", lambda i: {"out": [i * 10]})
    g.add_node("join", lambda s: {"n": sum(s["out"])})
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", lambda s: [Send("work", i) for i in range(s["n"])], ["work"])
    g.add_edge("work", "join")
    g.add_edge("join", END)
    return g.compile(checkpointer=saver)


@pytest.fixture
def saver(tmp_path: Path) -> Iterator[SqliteSaver]:
    with SqliteSaver.from_conn_string(str(tmp_path / "cp.db")) as s:
        yield s


def _history(app: Any, thread: str) -> list[tuple[Any, ...]]:
    config = {"configurable": {"thread_id": thread}}
    return [
        (s.values, s.next, s.metadata["step"], s.metadata["source"], [t.name for t in s.tasks])
        for s in app.get_state_history(config)
    ]


@pytest.mark.parametrize("build", [_chain, _fanout])
@pytest.mark.parametrize("kind", ["cadenza-sqlite", "memory"])
def test_async_stores_what_sync_stores(build: Any, kind: str, saver: SqliteSaver) -> None:
    """Every checkpoint and pending write is stored by the time invoke returns, with the
    values of its own step (not as later steps changed the run's working checkpoint)."""
    target = saver if kind == "cadenza-sqlite" else InMemorySaver()
    app = build(target)
    inputs = {"n": 0, "out": []}
    out_async = app.invoke(inputs, {"configurable": {"thread_id": "a"}})
    out_sync = app.invoke(inputs, {"configurable": {"thread_id": "s"}}, durability="sync")
    assert out_async == out_sync
    assert _history(app, "a") == _history(app, "s")
    assert len(_history(app, "a")) >= 4


def test_a_quick_run_is_stored_in_one_transaction(saver: SqliteSaver) -> None:
    """The writer hands the saver every call queued meanwhile: steps that run faster than it
    writes share a commit, where sync durability commits twice per step."""
    batches: list[int] = []
    original = SqliteSaver.save_batch

    def counting(self: SqliteSaver, calls: Any) -> None:
        batches.append(len(calls))
        original(self, calls)

    app = _chain(saver, length=8)
    SqliteSaver.save_batch = counting  # type: ignore[method-assign]
    try:
        release = threading.Event()
        writer = writeback.writer_for(saver)
        assert writer is not None
        # hold the writer on its first call, so that the rest of the run queues behind it
        first = SqliteSaver.put_writes

        def slow_put_writes(self: SqliteSaver, *args: Any, **kwargs: Any) -> None:
            release.wait(5)
            first(self, *args, **kwargs)

        SqliteSaver.put_writes = slow_put_writes  # type: ignore[method-assign]
        timer = threading.Timer(0.2, release.set)
        timer.start()
        app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}})
        timer.join()
    finally:
        SqliteSaver.save_batch = original  # type: ignore[method-assign]
        SqliteSaver.put_writes = first  # type: ignore[method-assign]
    assert batches and max(batches) >= 8
    assert len(_history(app, "t")) == 10  # input, 8 steps, end


class _Failing(InMemorySaver):
    """Fails the put of a step's checkpoint once ``fail_at`` checkpoints are stored."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.puts = 0

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self.puts == self.fail_at:
            raise OSError("disk full")
        self.puts += 1
        return super().put(config, checkpoint, metadata, new_versions)


def test_a_failed_write_is_raised_by_the_run_and_its_later_writes_dropped() -> None:
    saver = _Failing(fail_at=2)
    app = _chain(saver, length=5)
    with pytest.raises(OSError, match="disk full"):
        app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}})
    assert saver.puts == 2  # nothing after the failed checkpoint
    # the next run on the saver is not affected
    saver.fail_at = -1
    assert app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "u"}})["n"] == 5


def test_save_batch_is_all_or_nothing(tmp_path: Path, saver: SqliteSaver) -> None:
    app = _chain(saver, length=2)
    app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}}, durability="sync")
    latest = saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert latest is not None
    good = ("put_writes", (latest.config, [("n", 1)], "task-1", ""))
    bad = ("put_writes", ({"configurable": {"thread_id": "t"}}, [("n", 2)], "task-2", ""))
    with pytest.raises(ValueError, match="checkpoint_id"):
        saver.save_batch([good, bad])
    again = saver.get_tuple({"configurable": {"thread_id": "t"}})
    assert again is not None and again.pending_writes == []  # the good call was rolled back
    with pytest.raises(ValueError, match="is not put or put_writes"):
        saver.save_batch([("delete_thread", ("t",))])
    conn = sqlite3.connect(tmp_path / "cp.db")
    assert (
        conn.execute(
            "SELECT count(*) FROM langgraph_writes WHERE task_id LIKE 'task-%'"
        ).fetchone()[0]
        == 0
    )
    conn.close()


def test_the_writer_stops_when_idle_and_starts_again(
    monkeypatch: pytest.MonkeyPatch, saver: SqliteSaver
) -> None:
    monkeypatch.setattr(writeback, "IDLE_S", 0.05)
    app = _chain(saver, length=2)
    app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "a"}})
    writer = writeback.writer_for(saver)
    assert writer is not None
    deadline = time.monotonic() + 5
    while writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._thread is None
    assert app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "b"}})["n"] == 2
    assert len(_history(app, "b")) == 4


def test_reading_state_waits_for_queued_writes(saver: SqliteSaver) -> None:
    """get_state while another thread's run still has writes queued sees them once queued
    work is done (reads flush the saver's writer first)."""
    app = _chain(saver, length=3)
    writer = writeback.writer_for(saver)
    assert writer is not None
    owner = writeback.Owner()
    gate = threading.Event()
    original = SqliteSaver.put

    def gated(self: SqliteSaver, *args: Any) -> Any:
        gate.wait(5)
        return original(self, *args)

    app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}}, durability="sync")
    state = app.get_state({"configurable": {"thread_id": "t"}})
    update = app.update_state(state.config, {"n": 100})
    assert update["configurable"]["thread_id"] == "t"
    SqliteSaver.put = gated  # type: ignore[method-assign]
    try:
        latest = saver.get_tuple({"configurable": {"thread_id": "t"}})
        assert latest is not None
        checkpoint = dict(latest.checkpoint, id="1fffffff-ffff-6fff-bfff-ffffffffffff")
        writer.submit(
            owner, "put", (latest.config, checkpoint, {"step": 9, "source": "update"}, {})
        )
        threading.Timer(0.1, gate.set).start()
        state = app.get_state({"configurable": {"thread_id": "t"}})
    finally:
        SqliteSaver.put = original  # type: ignore[method-assign]
    assert state.metadata["step"] == 9


def test_coalesced_merges_deferred_statements_per_table_in_order() -> None:
    from cadenza.langgraph.checkpoint._ops import Mode, Stmt, coalesced

    a, b, u = (
        "INSERT INTO ta (x) VALUES (?)",
        "INSERT INTO tb (x) VALUES (?)",
        "UPDATE ta SET x = ?",
    )
    read = "SELECT 1"

    def op() -> Any:
        yield Stmt(a, [(1,)], Mode.MANY, defer=True)
        yield Stmt(b, (2,), Mode.EXEC, defer=True)
        yield Stmt(a, [(3,), (4,)], Mode.MANY, defer=True)
        yield Stmt(u, (5,), Mode.EXEC, defer=True)
        yield Stmt(a, [(6,)], Mode.MANY, defer=True)
        seen = yield Stmt(read, (), Mode.ONE)  # runs after everything deferred before it
        yield Stmt(b, [(seen,)], Mode.MANY, defer=True)
        return "done"

    emitted: list[tuple[str, Any]] = []
    gen = coalesced(op())
    result: Any = None
    try:
        while True:
            stmt = gen.send(result)
            emitted.append((stmt.sql, stmt.params))
            result = 7 if stmt.sql == read else None
    except StopIteration as stop:
        assert stop.value == "done"
    assert emitted == [
        (a, [(1,), (3,), (4,)]),
        (u, [(5,)]),
        (a, [(6,)]),
        (b, [(2,)]),
        (read, ()),
        (b, [(7,)]),
    ]


def _explode(left: int, right: int) -> int:
    if right < 0:
        raise ValueError("negative")
    return left + right


class Bad(TypedDict):
    n: int
    total: Annotated[int, _explode]


def _failing_reducer_graph(saver: Any) -> Any:
    g = StateGraph(Bad)
    g.add_node("a", lambda s: {"n": 1, "total": 2})
    g.add_node("b", lambda s: {"n": 2, "total": -1})  # the reducer raises after the task
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    return g.compile(checkpointer=saver)


@pytest.mark.parametrize("build", [_chain, _failing_reducer_graph])
def test_sync_stores_a_lone_tasks_writes_with_its_checkpoint(
    build: Any, saver: SqliteSaver
) -> None:
    """With "sync", a step's only task's writes go into the step's checkpoint transaction
    (one commit per step); what is stored is what a saver without batches stores, also when
    the step fails between its task and its checkpoint."""
    batches: list[list[str]] = []
    original = SqliteSaver.save_batch

    def counting(self: SqliteSaver, calls: Any) -> None:
        batches.append([method for method, _ in calls])
        original(self, calls)

    results = {}
    stored = {}
    for kind, target in (("cadenza", saver), ("memory", InMemorySaver())):
        app = build(target)
        config = {"configurable": {"thread_id": "t"}}
        SqliteSaver.save_batch = counting  # type: ignore[method-assign]
        try:
            results[kind] = app.invoke({"n": 0}, config, durability="sync")
        except ValueError as exc:
            results[kind] = f"error: {exc}"
        finally:
            SqliteSaver.save_batch = original  # type: ignore[method-assign]
        stored[kind] = [
            (t.checkpoint["channel_values"], sorted((c, repr(v)) for _, c, v in t.pending_writes))
            for t in target.list(config)
        ]
    assert results["cadenza"] == results["memory"]
    assert stored["cadenza"] == stored["memory"]
    assert batches and all(b[-1] in ("put", "put_writes") for b in batches)
    if build is _chain:
        assert batches.count(["put_writes", "put"]) == 6  # one per step, the input's too


def test_runs_in_many_threads_share_one_writer(saver: SqliteSaver) -> None:
    app = _chain(saver, length=4)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(15):
                out = app.invoke({"n": 0, "out": []}, {"configurable": {"thread_id": f"{k}-{i}"}})
                assert out["n"] == 4
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for k in range(4):
        for i in range(15):
            assert len(_history(app, f"{k}-{i}")) == 6
    conn = sqlite3.connect(saver.conn.execute("PRAGMA database_list").fetchone()[2])
    assert conn.execute("SELECT count(*) FROM runs WHERE status = 'COMPLETED'").fetchone()[0] == 60
    conn.close()


ASYNC_CHILD = textwrap.dedent(
    """
    import operator, os, signal, sqlite3, sys, time
    from typing import Annotated, TypedDict
    from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
    from cadenza.langgraph.graph import START, StateGraph

    db, marks = sys.argv[1], sys.argv[2]

    class S(TypedDict):
        done: Annotated[list[str], operator.add]

    def stored_steps():
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT count(*) FROM langgraph_checkpoints").fetchone()[0]
        finally:
            conn.close()

    def step(name):
        def node(state):
            with open(marks, "a") as f:
                f.write(name + "\\n")
            if name == "b" and os.environ.get("KILL_AT_B"):
                # the run goes on while the writer stores the steps before this one
                deadline = time.monotonic() + 20
                while stored_steps() < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
            return {"done": [name]}
        return node

    g = StateGraph(S)
    for n in "abc":
        g.add_node(n, step(n))
    g.add_edge(START, "a"); g.add_edge("a", "b"); g.add_edge("b", "c")
    with SqliteSaver.from_conn_string(db) as saver:
        app = g.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "crash"}}
        start = None if os.environ.get("RESUME") else {"done": []}
        print(app.invoke(start, config)["done"])
    """
)


def test_a_killed_async_run_resumes_from_what_the_writer_stored(tmp_path: Path) -> None:
    """With the default durability the writer stores the steps behind the run while a node
    runs; a run killed in node b resumes from the step before it (a is not run again)."""
    printed, marks = kill_then_resume(tmp_path, ASYNC_CHILD)
    assert printed == "['a', 'b', 'c']"
    assert marks == ["a", "b", "b", "c"]


# -- the async driver ---------------------------------------------------------------------------


@pytest.mark.parametrize("build", [_chain, _fanout])
@pytest.mark.parametrize("kind", ["cadenza-sqlite", "memory"])
async def test_ainvoke_async_stores_what_sync_stores(
    build: Any, kind: str, saver: SqliteSaver
) -> None:
    target = saver if kind == "cadenza-sqlite" else InMemorySaver()
    app = build(target)
    inputs = {"n": 0, "out": []}
    out_async = await app.ainvoke(inputs, {"configurable": {"thread_id": "a"}})
    out_sync = await app.ainvoke(inputs, {"configurable": {"thread_id": "s"}}, durability="sync")
    assert out_async == out_sync
    assert _history(app, "a") == _history(app, "s")
    chunks = [c async for c in app.astream(inputs, {"configurable": {"thread_id": "b"}})]
    assert chunks and _history(app, "b") == _history(app, "s")


async def test_ainvoke_batches_the_calls_queued_behind_the_run(saver: SqliteSaver) -> None:
    batches: list[int] = []
    original = SqliteSaver.asave_batch

    async def counting(self: SqliteSaver, calls: Any) -> None:
        batches.append(len(calls))
        await original(self, calls)

    SqliteSaver.asave_batch = counting  # type: ignore[method-assign]
    try:
        app = _chain(saver, length=8)
        await app.ainvoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}})
    finally:
        SqliteSaver.asave_batch = original  # type: ignore[method-assign]
    # written while the next step runs: what queued meanwhile goes in one transaction
    assert max(batches) >= 2
    assert len(_history(app, "t")) == 10


class _AsyncFailing(_Failing):
    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self.put(config, checkpoint, metadata, new_versions)


async def test_ainvoke_raises_a_failed_write_and_drops_the_later_ones() -> None:
    saver = _AsyncFailing(fail_at=2)
    app = _chain(saver, length=5)
    with pytest.raises(OSError, match="disk full"):
        await app.ainvoke({"n": 0, "out": []}, {"configurable": {"thread_id": "t"}})
    assert saver.puts == 2
    saver.fail_at = -1
    out = await app.ainvoke({"n": 0, "out": []}, {"configurable": {"thread_id": "u"}})
    assert out["n"] == 5
