"""Durability with real checkpointers: a run paused at an interrupt resumes in a new graph
object (a restarted program), on LangGraph's savers and on Cadenza's; a run written by one
engine resumes on the other; a process killed mid-run resumes from its last checkpoint."""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from tests.langgraph.harness import Lib, load, norm


class Flow(TypedDict):
    topic: str
    steps: Annotated[list[str], operator.add]


def _graph(lib: Lib, saver: Any) -> Any:
    def plan(s: Flow) -> dict[str, Any]:
        return {"steps": [f"plan:{s['topic']}"]}

    def approve(s: Flow) -> dict[str, Any]:
        answer = lib.types.interrupt({"question": "approve?", "steps": len(s["steps"])})
        return {"steps": [f"approved:{answer}"]}

    def write(s: Flow) -> dict[str, Any]:
        return {"steps": ["write"]}

    g = lib.graph.StateGraph(Flow)
    g.add_node("plan", plan)
    g.add_node("approve", approve)
    g.add_node("write", write)
    g.add_edge(lib.graph.START, "plan")
    g.add_edge("plan", "approve")
    g.add_edge("approve", "write")
    return g.compile(checkpointer=saver)


@contextmanager
def _saver(kind: str, path: Path, shared: dict[str, Any]) -> Iterator[Any]:
    """A saver on the same storage each time it is opened (one memory saver per test)."""
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield shared.setdefault("memory", InMemorySaver())
    elif kind == "langgraph-sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(path / "lg.db", check_same_thread=False)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
    else:
        from cadenza.langgraph.checkpoint.sqlite import SqliteSaver as CadenzaSqliteSaver

        with CadenzaSqliteSaver.from_conn_string(str(path / "cadenza.db")) as saver:
            yield saver


def _history(app: Any, config: dict[str, Any]) -> list[Any]:
    return [
        (norm(s.values), s.next, s.metadata["source"], s.metadata["step"])
        for s in app.get_state_history(config)
    ]


def _scenario(first: Lib, second: Lib, kind: str, path: Path) -> tuple[Any, Any, list[Any]]:
    """Run to the interrupt with ``first``, then resume with a new ``second`` graph on a
    newly opened saver."""
    shared: dict[str, Any] = {}
    config = {"configurable": {"thread_id": "t1"}}
    with _saver(kind, path, shared) as saver:
        paused = norm(_graph(first, saver).invoke({"topic": "ckpt"}, config))
    with _saver(kind, path, shared) as saver:
        app = _graph(second, saver)
        done = norm(app.invoke(second.types.Command(resume="yes"), config))
        return paused, done, _history(app, config)


SAVERS = ["memory", "langgraph-sqlite", "cadenza-sqlite"]


@pytest.mark.parametrize("kind", SAVERS)
def test_resume_in_a_new_graph_matches_langgraph(kind: str, tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    (tmp_path / "facade").mkdir()
    reference = _scenario(load("langgraph"), load("langgraph"), "memory", tmp_path / "ref")
    facade = _scenario(load("cadenza"), load("cadenza"), kind, tmp_path / "facade")
    assert facade == reference
    paused, done, history = facade
    assert paused["__interrupt__"] == [("Interrupt", {"question": "approve?", "steps": 1})]
    assert done == {"topic": "ckpt", "steps": ["plan:ckpt", "approved:yes", "write"]}
    assert [h[2] for h in history] == ["loop", "loop", "loop", "loop", "input"]


@pytest.mark.parametrize(("first", "second"), [("langgraph", "cadenza"), ("cadenza", "langgraph")])
def test_a_run_paused_by_one_engine_resumes_on_the_other(
    first: str, second: str, tmp_path: Path
) -> None:
    paused, done, history = _scenario(load(first), load(second), "langgraph-sqlite", tmp_path)
    assert paused["__interrupt__"] == [("Interrupt", {"question": "approve?", "steps": 1})]
    assert done == {"topic": "ckpt", "steps": ["plan:ckpt", "approved:yes", "write"]}
    assert [h[3] for h in history] == [3, 2, 1, 0, -1]


def test_async_saver_pause_and_resume(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    lib = load("cadenza")
    config = {"configurable": {"thread_id": "a1"}}

    async def scenario() -> tuple[Any, Any]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.db")) as saver:
            paused = await _graph(lib, saver).ainvoke({"topic": "async"}, config)
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.db")) as saver:
            app = _graph(lib, saver)
            done = await app.ainvoke(lib.types.Command(resume="ok"), config)
            state = await app.aget_state(config)
            return norm(paused), (norm(done), state.next)

    paused, (done, following) = asyncio.run(scenario())
    assert paused["__interrupt__"] == [("Interrupt", {"question": "approve?", "steps": 1})]
    assert done["steps"] == ["plan:async", "approved:ok", "write"]
    assert following == ()


CHILD = textwrap.dedent(
    """
    import operator, os, signal, sqlite3, sys
    from typing import Annotated, TypedDict
    from langgraph.checkpoint.sqlite import SqliteSaver
    from cadenza.langgraph.graph import START, StateGraph

    db, marks = sys.argv[1], sys.argv[2]

    class S(TypedDict):
        done: Annotated[list[str], operator.add]

    def step(name):
        def node(state):
            with open(marks, "a") as f:
                f.write(name + "\\n")
            if name == "b" and os.environ.get("KILL_AT_B"):
                os.kill(os.getpid(), signal.SIGKILL)
            return {"done": [name]}
        return node

    g = StateGraph(S)
    for n in "abc":
        g.add_node(n, step(n))
    g.add_edge(START, "a"); g.add_edge("a", "b"); g.add_edge("b", "c")
    app = g.compile(checkpointer=SqliteSaver(sqlite3.connect(db, check_same_thread=False)))
    config = {"configurable": {"thread_id": "crash"}}
    start = None if os.environ.get("RESUME") else {"done": []}
    print(app.invoke(start, config, durability="sync")["done"])
    """
)


def kill_then_resume(tmp_path: Path, source: str) -> tuple[str, list[str]]:
    """Run the child script ``source`` (args: a database path and a marks file) once with
    ``KILL_AT_B=1`` (it must SIGKILL itself) and once with ``RESUME=1``; returns what the
    resumed run printed and the marks the nodes left in both."""
    script = tmp_path / "child.py"
    script.write_text(source)
    db, marks = tmp_path / "crash.db", tmp_path / "marks.txt"
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }

    def child(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(db), str(marks)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    killed = child(KILL_AT_B="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = child(RESUME="1")
    assert resumed.returncode == 0, resumed.stderr
    return resumed.stdout.strip(), marks.read_text().split()


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    """With ``durability="sync"`` each step's checkpoint is stored before the next step
    starts, so exactly the step in flight runs again (the default, ``"async"``, may also
    lose the checkpoint being written, as LangGraph's does)."""
    printed, marks = kill_then_resume(tmp_path, CHILD)
    assert printed == "['a', 'b', 'c']"
    assert marks == ["a", "b", "b", "c"], (
        "a finished before the kill and is not run again; b, in flight, runs again"
    )
