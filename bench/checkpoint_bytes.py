"""Checkpoint storage of a long conversation: LangGraph's SqliteSaver against Cadenza's.

A real LangGraph graph (``StateGraph(MessagesState)``: ``START -> model -> END``, the messages
merged by ``add_messages``; the "model" a deterministic function that answers each question)
is invoked once per turn on one thread, ``--turns`` times (default 1,000), with each saver on a
fresh SQLite file. LangGraph's saver stores every channel value again in full at every
checkpoint, so the ``messages`` list makes storage grow with the square of the turns; Cadenza's
stores each version once and a list as the items appended since the version before.

Printed per saver: bytes stored (the file's size after ``VACUUM``, and the sum of the sizes of
the values in the rows of its tables: checkpoints, blobs, writes, and for Cadenza the run and
its events), the number of checkpoints, the mean time of a ``put`` (timed inside the saver)
and of a whole turn; then the ratios. Both files use WAL with ``synchronous=NORMAL`` so that
the times compare the savers, not the fsync policy. The result is checked: the last state
holds every message of every turn, in order, on both savers.

    python bench/checkpoint_bytes.py [--turns N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver as LangGraphSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

from cadenza.langgraph.checkpoint.sqlite import SqliteSaver as CadenzaSqliteSaver

LANGGRAPH_TABLES = ("checkpoints", "writes")
CADENZA_TABLES = ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes", "runs", "events")


def model(state: MessagesState) -> dict[str, Any]:
    """A deterministic "model": answers the last question, citing how long the talk is."""
    question = state["messages"][-1].content
    answer = f"Answer #{len(state['messages']) // 2 + 1} to {question!r}: " + "lorem ipsum " * 8
    return {"messages": [AIMessage(answer)]}


def build(checkpointer: Any) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("model", model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    return graph.compile(checkpointer=checkpointer)


def timed(saver_class: type) -> type:
    """A subclass of ``saver_class`` that adds up the time spent in ``put``."""

    class Timed(saver_class):  # type: ignore[misc, valid-type]
        put_seconds = 0.0
        puts = 0

        def put(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().put(*args, **kwargs)
            finally:
                type(self).put_seconds += time.perf_counter() - start
                type(self).puts += 1

    return Timed


def converse(saver: Any, turns: int) -> tuple[float, list[Any]]:
    app = build(saver)
    config = {"configurable": {"thread_id": "conversation"}}
    start = time.perf_counter()
    for turn in range(turns):
        app.invoke({"messages": [HumanMessage(f"question {turn}: what next?")]}, config)
    wall = time.perf_counter() - start
    return wall, app.get_state(config).values["messages"]


def row_bytes(path: Path, tables: tuple[str, ...]) -> int:
    """The sum of the sizes of every value in the tables' rows (text as UTF-8)."""
    total = 0
    with sqlite3.connect(path) as conn:
        for table in tables:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            sizes = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in columns)
            total += conn.execute(f"SELECT coalesce(sum({sizes}), 0) FROM {table}").fetchone()[0]
    return total


def file_bytes(path: Path) -> int:
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    return path.stat().st_size


def check(messages: list[Any], turns: int) -> None:
    questions = [m.content for m in messages if isinstance(m, HumanMessage)]
    if len(messages) != 2 * turns or questions != [
        f"question {t}: what next?" for t in range(turns)
    ]:
        raise SystemExit(f"FAILED: the conversation has {len(messages)} messages, not {2 * turns}")


def run_langgraph(path: Path, turns: int) -> dict[str, float]:
    saver_class = timed(LangGraphSqliteSaver)
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        wall, messages = converse(saver_class(conn), turns)
    finally:
        conn.close()
    check(messages, turns)
    return _result(path, LANGGRAPH_TABLES, wall, turns, saver_class)


def run_cadenza(path: Path, turns: int) -> dict[str, float]:
    saver_class = timed(CadenzaSqliteSaver)
    with saver_class.from_conn_string(str(path), fast=True) as saver:
        wall, messages = converse(saver, turns)
    check(messages, turns)
    return _result(path, CADENZA_TABLES, wall, turns, saver_class)


def _result(
    path: Path, tables: tuple[str, ...], wall: float, turns: int, saver_class: Any
) -> dict[str, float]:
    return {
        "rows": row_bytes(path, tables),
        "file": file_bytes(path),
        "checkpoints": saver_class.puts,
        "put_us": saver_class.put_seconds / max(saver_class.puts, 1) * 1e6,
        "turn_ms": wall / turns * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    turns = parser.parse_args().turns
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "langgraph SqliteSaver": run_langgraph(Path(tmp, "langgraph.db"), turns),
            "cadenza SqliteSaver": run_cadenza(Path(tmp, "cadenza.db"), turns),
        }
    print(f"{turns} turns, one thread, {2 * turns} messages at the end")
    print(
        f"{'saver':<24}{'file bytes':>14}{'row bytes':>14}{'checkpoints':>13}"
        f"{'put µs':>10}{'turn ms':>10}"
    )
    for name, r in results.items():
        print(
            f"{name:<24}{r['file']:>14,}{r['rows']:>14,}{r['checkpoints']:>13,.0f}"
            f"{r['put_us']:>10.0f}{r['turn_ms']:>10.2f}"
        )
    theirs, ours = results["langgraph SqliteSaver"], results["cadenza SqliteSaver"]
    ratios = {key: theirs[key] / ours[key] for key in ("file", "rows", "put_us", "turn_ms")}
    print(
        "ratio (langgraph / cadenza): file {file:.1f}x, rows {rows:.1f}x, "
        "put time {put_us:.1f}x, turn time {turn_ms:.1f}x".format(**ratios)
    )


if __name__ == "__main__":
    main()
