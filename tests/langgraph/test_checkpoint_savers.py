"""Cadenza's LangGraph checkpointers beyond the conformance suite: real graphs interrupted and
resumed by a new saver, the threads as runs in Cadenza's store with verifiable logs, delta
storage that round-trips exactly, and the errors bad input gets."""

from __future__ import annotations

import asyncio
import json
import operator
import sqlite3
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, Send, interrupt
from typer.testing import CliRunner

from cadenza.core.errors import StoreError
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.core.status import WorkflowStatus
from cadenza.langgraph.checkpoint._delta import DELTA, FULL

pytest.importorskip(
    "psycopg", reason="the postgres extra is not installed: pip install '.[postgres]'"
)

from cadenza.langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from cadenza.langgraph.checkpoint.sqlite import SqliteSaver
from cadenza.observe.audit import verify
from cadenza.store.base import RunRecord
from cadenza.store.migrate import load_migrations
from tests.langgraph.checkpoint_dbs import KINDS, cadenza_store, database, saver

S = WorkflowStatus
ALL_KINDS = list(KINDS)


def build(checkpointer: Any) -> Any:
    """``START -> model -> review -> END``; ``review`` asks a person (``interrupt``)."""

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
    return graph.compile(checkpointer=checkpointer)


async def invoke(kind: str, app: Any, value: Any, config: dict[str, Any]) -> Any:
    if KINDS[kind][1]:
        return await app.ainvoke(value, config)
    return await asyncio.to_thread(app.invoke, value, config)


async def history(kind: str, app: Any, config: dict[str, Any]) -> list[Any]:
    if KINDS[kind][1]:
        return [s async for s in app.aget_state_history(config)]
    return await asyncio.to_thread(lambda: list(app.get_state_history(config)))


def config(thread: str, **metadata: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "metadata": metadata}


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_interrupted_graph_resumes_in_a_new_saver_and_shows_as_a_run(
    kind: str, tmp_path: Path
) -> None:
    cfg = config("conversation-1", workflow="support-bot")
    async with database(kind, tmp_path) as where:
        async with saver(kind, where) as first:
            out = await invoke(kind, build(first), {"messages": [("user", "hi")]}, cfg)
        assert out["__interrupt__"][0].value == {"question": "send it?"}
        async with cadenza_store(kind, where) as store:
            run = await store.get_run(RunId("conversation-1"))
            assert (run.workflow, run.status) == ("support-bot", S.WAITING_APPROVAL)

        async with saver(kind, where) as second:
            app = build(second)
            out = await invoke(kind, app, Command(resume="yes"), cfg)
            assert [m.content for m in out["messages"]] == ["hi", "answer 1", "review: yes"]
            checkpoints = await history(kind, app, cfg)
        assert checkpoints[0].next == ()

        async with cadenza_store(kind, where) as store:
            [run] = await store.list_runs()
            assert (run.run_id, run.status, run.version) == (
                "conversation-1",
                S.COMPLETED,
                "langgraph",
            )
            events = await store.read_events(run.run_id)
    assert verify(events) is None
    recorded = [e.data["checkpoint_id"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert recorded == [c.config["configurable"]["checkpoint_id"] for c in reversed(checkpoints)]
    statuses = [(e.data["from"], e.data["to"]) for e in events if e.type == EventType.STATUS]
    assert statuses == [("RUNNING", "WAITING_APPROVAL"), ("WAITING_APPROVAL", "COMPLETED")]
    assert events[0].type == EventType.RUN_CREATED


class Fan(MessagesState):
    done: Annotated[list[int], operator.add]


def test_recorded_next_nodes_match_langgraph(tmp_path: Path) -> None:
    """Every checkpoint event names the nodes LangGraph has due at it (sends included)."""

    def plan(state: Fan) -> dict[str, Any]:
        return {"messages": [AIMessage("plan")]}

    def fan_out(state: Fan) -> list[Send]:
        return [Send("work", {"n": n}) for n in range(3)]

    def work(arg: dict[str, int]) -> dict[str, Any]:
        return {"done": [arg["n"]]}

    graph = StateGraph(Fan)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["work"])
    graph.add_edge("work", END)
    path = str(tmp_path / "next.db")
    with SqliteSaver.from_conn_string(path) as s:
        app = graph.compile(checkpointer=s)
        cfg = config("fan")
        assert sorted(app.invoke({"messages": [("user", "go")]}, cfg)["done"]) == [0, 1, 2]
        expected = {
            snap.config["configurable"]["checkpoint_id"]: sorted(set(snap.next))
            for snap in app.get_state_history(cfg)
        }
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = 'step_completed'").fetchall()
    recorded = {d["checkpoint_id"]: d["next"] for d in (json.loads(r[0]) for r in rows)}
    assert recorded == expected
    assert ["work"] in expected.values()


def test_the_command_line_lists_shows_and_verifies_threads(tmp_path: Path) -> None:
    from cadenza.cli import app

    path = str(tmp_path / "cli.db")
    with SqliteSaver.from_conn_string(path) as s:
        graph = build(s)
        graph.invoke({"messages": [("user", "hi")]}, config("t-1"))
        graph.invoke(Command(resume="ok"), config("t-1"))
        graph.invoke({"messages": [("user", "hello")]}, config("t-2", workflow="triage"))
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "list", "--db", path, "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"t-1"' in listed.output and '"triage"' in listed.output
    shown = runner.invoke(app, ["runs", "show", "t-1", "--db", path, "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"COMPLETED"' in shown.output and '"step 2"' in shown.output
    verified = runner.invoke(app, ["audit", "verify", "--db", path])
    assert verified.exit_code == 0, verified.output
    assert "2 run(s)" in verified.output


# -- delta storage ------------------------------------------------------------------------------

ITEMS = st.one_of(
    st.integers(-5, 5), st.text(max_size=3), st.none(), st.lists(st.integers(-9, 9), max_size=2)
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(ITEMS, max_size=3)),
        st.tuples(st.just("replace"), st.lists(ITEMS, max_size=4)),
        st.tuples(st.just("truncate"), st.integers(0, 3)),
        st.tuples(st.just("scalar"), ITEMS),
        st.tuples(st.just("empty"), st.none()),
        st.tuples(st.just("other"), ITEMS),
        st.tuples(st.just("fork"), st.integers(0, 30)),
        st.tuples(st.just("cold"), st.none()),
    ),
    max_size=25,
)


@given(ops=OPS, full_every=st.sampled_from([1, 2, 3, 128]))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_delta_storage_round_trips_exactly(ops: list[tuple[str, Any]], full_every: int) -> None:
    """Random appends, replacements, truncations, forks (a checkpoint whose parent is an older
    one) and cold starts (a new saver: nothing remembered); every checkpoint, read back at
    the end, holds exactly the values it was written with."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    s = SqliteSaver(conn, full_every=full_every)
    written: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []  # config, values, versions
    values: dict[str, Any] = {"items": []}
    versions: dict[str, Any] = {}
    latest: Any = None  # versions only grow, on every branch
    parent: Any = None
    for i, (op, arg) in enumerate(ops):
        changed = {"items"}
        items = values.get("items")
        items = items if isinstance(items, list) else []
        if op == "append":
            values["items"] = [*items, *arg]
        elif op == "replace":
            values["items"] = list(arg)
        elif op == "truncate":
            values["items"] = items[:arg]
        elif op == "scalar":
            values["items"] = arg
        elif op == "empty":
            values.pop("items", None)
        elif op == "other":
            values["other"], changed = arg, {"other"}
        elif op == "fork" and written:
            parent, old_values, old_versions = written[arg % len(written)]
            values, versions = dict(old_values), dict(old_versions)
            base = values.get("items")
            values["items"] = [*base, i] if isinstance(base, list) else [i]
        elif op == "cold":
            s = SqliteSaver(conn, full_every=full_every)
            continue
        latest = s.get_next_version(latest, None)
        versions.update(dict.fromkeys(changed, latest))
        checkpoint = empty_checkpoint()
        checkpoint["id"] = f"{i:06d}"
        checkpoint["channel_values"] = dict(values)
        checkpoint["channel_versions"] = dict(versions)
        cfg: dict[str, Any] = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        if parent is not None:
            cfg["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
        parent = s.put(cfg, checkpoint, {"source": "loop", "step": i}, {c: latest for c in changed})
        expected = {k: v for k, v in values.items() if k in versions}
        written.append((parent, expected, dict(versions)))
        got = s.get_tuple(parent)
        assert got is not None and got.checkpoint["channel_values"] == expected
    reader = SqliteSaver(conn)
    for cfg, expected, _ in written:
        got = reader.get_tuple(cfg)
        assert got is not None and got.checkpoint["channel_values"] == expected, cfg
    conn.close()


def put_list(
    s: SqliteSaver, thread: str, items: list[Any], step: int, parent: Any, version: Any
) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = f"{step:06d}"
    checkpoint["channel_values"] = {"items": list(items)}
    checkpoint["channel_versions"] = {"items": version}
    cfg = parent or {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return s.put(
        cfg,
        checkpoint,
        {"source": "loop", "step": step, "run_id": f"run-{step // 10}"},
        {"items": version},
    )


def blob_kinds(path: str) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT version, kind FROM langgraph_blobs WHERE channel = 'items' ORDER BY version"
        ).fetchall()


def test_lists_are_stored_as_appended_items_with_periodic_full_copies(tmp_path: Path) -> None:
    path = str(tmp_path / "delta.db")
    with SqliteSaver.from_conn_string(path, full_every=10) as s:
        cfg, items = None, []
        for step in range(1, 31):
            items = [*items, f"message {step}"]
            cfg = put_list(s, "t", items, step, cfg, step)
    kinds = [kind for _, kind in blob_kinds(path)]
    assert kinds.count(FULL) == 3 and kinds.count(DELTA) == 27
    with SqliteSaver.from_conn_string(path) as s:
        for step in (1, 9, 10, 11, 30):
            got = s.get_tuple(
                {
                    "configurable": {
                        "thread_id": "t",
                        "checkpoint_ns": "",
                        "checkpoint_id": f"{step:06d}",
                    }
                }
            )
            assert got is not None
            assert got.checkpoint["channel_values"]["items"] == [
                f"message {n}" for n in range(1, step + 1)
            ]


def test_a_new_saver_extends_what_it_read_and_a_stale_memory_costs_only_space(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "memo.db")
    with SqliteSaver.from_conn_string(path) as writer, SqliteSaver.from_conn_string(path) as other:
        cfg = put_list(writer, "t", [1, 2], 1, None, 1)
        # another saver replaces the thread, reusing the version: the first one's memory is stale
        other.delete_thread("t")
        put_list(other, "t", [9, 9], 1, None, 1)
        stale = put_list(writer, "t", [1, 2, 3], 2, cfg, 2)
        assert writer.get_tuple(stale).checkpoint["channel_values"]["items"] == [1, 2, 3]
        # a saver that read the latest value stores the next one as the items appended
        latest = other.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
        put_list(other, "t", [1, 2, 3, 4], 3, latest.config, 3)
    assert blob_kinds(path) == [("1", FULL), ("2", FULL), ("3", DELTA)]


def test_deleting_older_checkpoints_keeps_what_later_ones_are_built_on(tmp_path: Path) -> None:
    path = str(tmp_path / "gc.db")
    with SqliteSaver.from_conn_string(path, full_every=100) as s:
        cfg, items = None, []
        for step in range(1, 31):  # runs run-0 .. run-3 wrote steps 1-9, 10-19, 20-29, 30
            items = [*items, step]
            cfg = put_list(s, "t", items, step, cfg, step)
        s.delete_for_runs(["run-0", "run-1"])
        latest = s.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
        assert latest.checkpoint["channel_values"]["items"] == list(range(1, 31))
        assert len(list(s.list(None))) == 11
        assert len(blob_kinds(path)) == 30  # every later version extends the first ones
        s.prune(["t"], strategy="keep_latest")
        [kept] = list(s.list(None))
        assert kept.checkpoint["channel_values"]["items"] == list(range(1, 31))
        assert kept.parent_config is None
        put_list(s, "t", [*range(1, 32)], 31, kept.config, 31)
    assert len(blob_kinds(path)) == 31


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_list_filters_on_metadata_of_any_json_kind(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as where, saver(kind, where) as s:
        parent = None
        for step in range(6):
            checkpoint = empty_checkpoint()
            checkpoint["id"] = f"{step:06d}"
            metadata = {
                "step": step,
                "team": {"name": "a" if step % 2 else "b", "size": 2},
                "flag": step > 3,
                "note": None if step == 5 else "x",
            }
            cfg = parent or {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
            parent = await s.aput(cfg, checkpoint, metadata, {})

        async def steps(**kw: Any) -> list[int]:
            return [t.metadata["step"] async for t in s.alist(None, **kw)]

        assert await steps(filter={"team": {"size": 2, "name": "a"}}) == [5, 3, 1]
        assert await steps(filter={"team": {"name": "a"}}) == []
        assert await steps(filter={"flag": True, "note": "x"}) == [4]
        assert await steps(filter={"note": None}) == [5]
        assert await steps(filter={"step": 2}) == [2]
        before = {"configurable": {"checkpoint_id": "000004"}}
        assert await steps(filter={"team": {"size": 2, "name": "b"}}, before=before, limit=1) == [2]


# -- runs, events and audit ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres-async"])
async def test_copies_and_deletions_are_recorded_in_the_runs(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as where:
        async with saver(kind, where) as s:
            app = build(s)
            await invoke(kind, app, {"messages": [("user", "hi")]}, config("source"))
            await s.acopy_thread("source", "copy")
            await s.adelete_thread("source")
            await s.aprune(["copy"], strategy="keep_latest")
            copied = await s.aget_tuple(config("copy"))
        assert copied is not None and [
            m.content for m in copied.checkpoint["channel_values"]["messages"]
        ] == ["hi", "answer 1"]
        async with cadenza_store(kind, where) as store:
            source = await store.get_run(RunId("source"))
            copy = await store.get_run(RunId("copy"))
            assert source.status == S.CANCELLED
            assert copy.status == S.WAITING_APPROVAL
            for run in (source, copy):
                events = await store.read_events(run.run_id)
                assert verify(events) is None
            reasons = [e.data.get("reason", "") for e in events if e.type == EventType.STATUS]
            assert any(r.startswith("prune (keep_latest)") for r in reasons)
            assert all(
                e.data.get("copied_from") == "source"
                for e in events
                if e.type == EventType.STEP_COMPLETED
            )


async def test_a_thread_id_taken_by_a_cadenza_run_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "taken.db")
    async with cadenza_store("sqlite", path) as store:
        await store.create_run(
            RunRecord(run_id=RunId("taken"), workflow="orders", version="v1"),
            [Event(RunId("taken"), 1, EventType.RUN_CREATED)],
        )
    with (
        SqliteSaver.from_conn_string(path) as s,
        pytest.raises(StoreError, match="not a LangGraph thread"),
    ):
        put_list(s, "taken", [1], 1, None, 1)
    with SqliteSaver.from_conn_string(path) as s:
        assert s.get_tuple({"configurable": {"thread_id": "taken"}}) is None


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_writers_on_one_thread_from_two_connections_keep_one_chain(
    kind: str, tmp_path: Path
) -> None:
    async with database(kind, tmp_path) as where:
        async with saver(kind, where) as a, saver(kind, where) as b:

            def write(s: Any, offset: int) -> None:
                for step in range(offset, offset + 40, 2):
                    put_list(s, "shared", [step], step, None, step)

            # both threads finish before the savers close, even when one of them fails
            done = await asyncio.gather(
                asyncio.to_thread(write, a, 0),
                asyncio.to_thread(write, b, 1),
                return_exceptions=True,
            )
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
        async with cadenza_store(kind, where) as store:
            events = await store.read_events(RunId("shared"))
    assert verify(events) is None
    assert len([e for e in events if e.type == EventType.STEP_COMPLETED]) == 40


# -- set-up and errors --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_setup_is_idempotent(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as where:
        for _ in range(2):
            async with saver(kind, where) as s:
                for _ in range(2):
                    result = s.setup()
                    if asyncio.iscoroutine(result):
                        await result
        async with cadenza_store(kind, where):
            pass
        expected = [m.version for m in load_migrations(KINDS[kind][0])]
        if KINDS[kind][0] == "sqlite":
            with sqlite3.connect(where) as conn:
                versions = [
                    v
                    for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")
                ]
        else:
            import psycopg

            with psycopg.connect(where) as conn:
                versions = [
                    v
                    for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")
                ]
    assert versions == expected


async def test_async_postgres_saver_sync_calls_only_from_other_threads(tmp_path: Path) -> None:
    async with database("postgres-async", tmp_path) as where, saver("postgres-async", where) as s:
        assert isinstance(s, AsyncPostgresSaver)
        cfg = {"configurable": {"thread_id": "t"}}
        with pytest.raises(asyncio.InvalidStateError, match="event loop"):
            s.get_tuple(cfg)
        assert await asyncio.to_thread(s.get_tuple, cfg) is None


async def test_postgres_savers_on_connection_pools(tmp_path: Path) -> None:
    import psycopg
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from cadenza.langgraph.checkpoint.postgres import PostgresSaver

    async with database("postgres", tmp_path) as where:
        with ConnectionPool(where, kwargs={"autocommit": True}, min_size=1, max_size=2) as pool:
            out = await invoke(
                "postgres", build(PostgresSaver(pool)), {"messages": [("user", "a")]}, config("p")
            )
            assert out["__interrupt__"]
        async with AsyncConnectionPool(
            where, kwargs={"autocommit": True}, min_size=1, max_size=2, open=False
        ) as apool:
            app = build(AsyncPostgresSaver(apool))
            out = await invoke("postgres-async", app, Command(resume="fine"), config("p"))
            assert out["messages"][-1].content == "review: fine"
        with psycopg.connect(where) as conn, pytest.raises(ValueError, match="autocommit"):
            PostgresSaver(conn).setup()


def test_bad_input_gets_a_clear_error(tmp_path: Path) -> None:
    with SqliteSaver.from_conn_string(str(tmp_path / "bad.db")) as s:
        checkpoint = empty_checkpoint()
        with pytest.raises(ValueError, match="thread_id"):
            s.put({"configurable": {}}, checkpoint, {}, {})
        with pytest.raises(ValueError, match="JSON"):
            s.put({"configurable": {"thread_id": "t"}}, checkpoint, {"when": object()}, {})  # type: ignore[typeddict-item]
        with pytest.raises(ValueError, match="filter key"):
            list(s.list(None, filter={"a'b": 1}))
        with pytest.raises(ValueError, match="checkpoint_id"):
            s.put_writes({"configurable": {"thread_id": "t"}}, [("c", 1)], "task")
        with pytest.raises(ValueError, match="strategy"):
            s.prune(["t"], strategy="everything")
        with pytest.raises(TypeError, match="not a str"):
            s.prune("t")
        with pytest.raises(ValueError, match="full_every"):
            SqliteSaver(s.conn, full_every=0)
    with (
        pytest.raises(StoreError, match="cannot open"),
        SqliteSaver.from_conn_string(str(tmp_path / "no" / "such" / "dir.db")),
    ):
        pass
    with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
        SqliteSaver("bad.db")  # type: ignore[arg-type]


def test_sync_saver_is_safe_across_threads(tmp_path: Path) -> None:
    with SqliteSaver.from_conn_string(str(tmp_path / "threads.db")) as s:
        threads = [
            threading.Thread(target=lambda n=n: put_list(s, f"t{n}", [n], 1, None, 1))
            for n in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {tup.config["configurable"]["thread_id"] for tup in s.list(None)} == {
            f"t{n}" for n in range(8)
        }
