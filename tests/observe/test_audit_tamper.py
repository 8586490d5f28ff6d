"""The verifier against what it exists to catch: runs recorded by a real engine, then rows
edited by hand (SQL on the SQLite file, or on PostgreSQL where the edit can be written in SQL),
checked through the API (``verify_store``) and the command line (``cadenza audit verify``).

Every tampering must name the run that was touched, at the right event and for the right
reason, keep checking the other runs, and print no traceback."""

from __future__ import annotations

import asyncio
import json
import operator
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from typer.testing import CliRunner

from cadenza import Engine, Workflow, WorkflowStatus
from cadenza.cli import app
from cadenza.core.events import Event, EventType
from cadenza.core.ids import RunId
from cadenza.observe.anchors import AnchorError, anchor_lines, parse_anchors
from cadenza.observe.audit import Broken, Reason, encode_stored, link
from cadenza.observe.audit_store import verify_store
from cadenza.observe.audit_verify import (
    THREAD_VERSION,
    RunCheck,
    check_run,
    decode_event,
    log_statuses,
)
from cadenza.store.base import Store, StoredEvent
from cadenza.store.sqlite import SQLiteStore

PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
runner = CliRunner()
S = WorkflowStatus


# -- the runs -----------------------------------------------------------------------------------


class State(TypedDict, total=False):
    who: str  # from the input, never written again: its snapshot value is always compared
    n: int  # written twice, last write wins: compared only with the definition
    log: Annotated[list[str], operator.add]  # merged by a reducer


def first(state: State) -> State:
    return {"n": 1, "log": ["first"]}


def left(state: State) -> State:
    return {"log": ["left"]}


def right(state: State) -> State:
    return {"log": ["right"]}


def second(state: State) -> State:
    return {"n": state["n"] + 1, "log": ["second"]}


def flow() -> Workflow:
    wf = Workflow("tampered", state=State)
    wf.task(first)
    wf.parallel("fan", [left, right])
    wf.task(second)
    return wf


def held_flow() -> Workflow:
    wf = Workflow("held", state=State)
    wf.task(first)
    wf.approval("review", approvers=["olivia"])
    wf.task(second)
    return wf


workflow = flow()  # for --workflow (this file as a target)


@dataclass
class Db:
    """One test's database: a SQLite file, or a PostgreSQL schema of its own."""

    kind: str
    path: Path | None = None
    schema: str = ""

    @property
    def url(self) -> str:
        """What ``--store`` takes."""
        if self.path is not None:
            return str(self.path)
        return f"{PG_DSN}?options=-csearch_path%3D{self.schema}"

    def store(self) -> Store:
        if self.path is not None:
            return SQLiteStore(self.path)
        from cadenza.store.postgres import PostgresStore

        return PostgresStore(PG_DSN, schema=self.schema, max_size=2)

    def execute(self, *statements: str, params: tuple[Any, ...] = ()) -> None:
        """Run statements (``?`` placeholders) as someone with write access to the database."""
        if self.path is not None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                for sql in statements:
                    conn.execute(sql, params if "?" in sql else ())
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(f"SET search_path TO {self.schema}")
            for sql in statements:
                pg.execute(sql.replace("?", "%s"), params if "?" in sql else ())  # type: ignore[arg-type]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.path is not None:
            conn = sqlite3.connect(self.path)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(f"SET search_path TO {self.schema}")
            return pg.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]


def _postgres_schema() -> str:
    """A fresh schema on the test server, or a skip saying why there is none."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'cadenza[postgres]')")
    schema = f"cadenza_tamper_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as pg:
            pg.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {exc}")
    return schema


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", path=tmp_path / "audit.db")
        return
    schema = _postgres_schema()
    try:
        yield Db("postgres", schema=schema)
    finally:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@dataclass
class Runs:
    victim: RunId  # the run every tampering touches
    others: list[RunId]
    events: int  # how many events the victim's log holds
    anchors: Path  # written by `cadenza audit anchor` before the tampering


@pytest.fixture
def runs(db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    return record_runs(db, tmp_path, monkeypatch)


def record_runs(db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    """Three runs: two completed (final snapshots), one waiting for an approval with a full
    snapshot of its progress (a snapshot with every commit)."""

    async def record() -> list[RunId]:
        async with Engine(db.store()) as engine:
            done = [(await engine.run(flow(), {"who": who})).run_id for who in ("alice", "bob")]
            monkeypatch.setattr("cadenza.runtime.run.SNAPSHOT_EVERY", 1)
            waiting = await engine.run(held_flow(), {"who": "carol"})
            assert waiting.status is S.WAITING_APPROVAL
            return [*done, waiting.run_id]

    victim, *others = asyncio.run(record())
    (count,) = db.rows("SELECT count(*) FROM events WHERE run_id = ?", (victim,))[0]
    anchors = tmp_path / "anchors.jsonl"
    code, _, err = invoke("audit", "anchor", "--store", db.url, "-o", str(anchors))
    assert code == 0, err
    assert "anchored 3 run(s)" in err
    return Runs(RunId(victim), others, count, anchors)


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def api_checks(db: Db, anchors: dict[RunId, tuple[int, str]] | None = None) -> list[RunCheck]:
    async def main() -> list[RunCheck]:
        store = db.store()
        await store.open()
        try:
            return await verify_store(store, anchors=anchors)
        finally:
            await store.close()

    return asyncio.run(main())


# -- the tamperings -----------------------------------------------------------------------------

Expected = tuple[int, Reason] | None  # (seq, reason) reported for the victim, None: verifies
At = Callable[[int], Expected]  # from the number of events in the victim's log


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Db, Runs], None]
    plain: At  # what verify says without anchors
    anchored: At | None = None  # with the anchors written before (default: the same)
    detail: str = ""  # part of the reported detail
    kinds: tuple[str, ...] = ("sqlite", "postgres")  # where SQL can make the edit


def sql(*statements: str) -> Callable[[Db, Runs], None]:
    """Statements run with the victim's id for every ``?``."""
    return lambda db, runs: db.execute(*statements, params=(runs.victim,))


def per_kind(**statements: list[str]) -> Callable[[Db, Runs], None]:
    return lambda db, runs: db.execute(*statements[db.kind], params=(runs.victim,))


def rewrite_tail(db: Db, runs: Runs) -> None:
    """Edit an event that nothing folds (a note in a step's data) and recompute every hash
    from there: the chain is valid again, only an anchor can tell."""
    rows = db.rows(
        "SELECT seq, type, path, scope, attempt, CAST(data AS TEXT), ts, hash FROM events "
        "WHERE run_id = ? ORDER BY seq",
        (runs.victim,),
    )
    prev = rows[1][7]
    for seq, type_, path, scope, attempt, data, ts, _ in rows[2:]:
        value = json.loads(data)
        if seq == 3:
            value["note"] = "approved by mallory"
        body = encode_stored(runs.victim, seq, type_, path, scope, attempt, value, ts)
        digest = link(prev, body)
        db.execute(
            "UPDATE events SET data = ?, prev_hash = ?, hash = ? WHERE run_id = ? AND seq = ?",
            params=(json.dumps(value), prev, digest, runs.victim, seq),
        )
        prev = digest


def drop_not_null(db: Db, runs: Runs) -> None:
    """Let ``ts`` be NULL (SQLite: rebuild the table; PostgreSQL: drop the constraint)."""
    if db.kind == "sqlite":
        db.execute(
            "CREATE TABLE loose AS SELECT * FROM events",
            "DROP TABLE events",
            "ALTER TABLE loose RENAME TO events",
        )
    else:
        db.execute("ALTER TABLE events ALTER COLUMN ts DROP NOT NULL")
    db.execute("UPDATE events SET ts = NULL WHERE run_id = ? AND seq = 3", params=(runs.victim,))


M = Reason.MALFORMED
CASES: dict[str, Case] = {
    "data not JSON": Case(
        sql("UPDATE events SET data = '{\"oops' WHERE run_id = ? AND seq = 3"),
        lambda n: (3, M),
        detail="data is not JSON",
        kinds=("sqlite",),  # a json column refuses it
    ),
    "data not an object": Case(
        sql("UPDATE events SET data = '[1, 2]' WHERE run_id = ? AND seq = 3"),
        lambda n: (3, M),
        detail="data is a JSON list, not an object",
    ),
    "unknown type": Case(
        sql("UPDATE events SET type = 'forged' WHERE run_id = ? AND seq = 3"),
        lambda n: (3, M),
        detail="type 'forged' is not an event type",
    ),
    "NULL column": Case(drop_not_null, lambda n: (3, M), detail="ts is NULL, not a number"),
    "data a BLOB": Case(
        sql("UPDATE events SET data = CAST(data AS BLOB) WHERE run_id = ? AND seq = 3"),
        lambda n: (3, M),
        detail="data is",
        kinds=("sqlite",),
    ),
    "data not UTF-8": Case(
        sql(
            "UPDATE events SET data = CAST(X'7b22ff223a317d' AS TEXT) WHERE run_id = ? AND seq = 3"
        ),
        lambda n: (3, M),
        detail="not UTF-8",
        kinds=("sqlite",),
    ),
    "seq not an integer": Case(
        lambda db, runs: db.execute(
            "UPDATE events SET seq = 'last' WHERE run_id = ? AND seq = ?",
            params=(runs.victim, runs.events),
        ),
        lambda n: (n, M),
        detail="seq is 'last', not an integer",
        kinds=("sqlite",),  # an integer column refuses it
    ),
    "event deleted": Case(
        sql("DELETE FROM events WHERE run_id = ? AND seq = 3"),
        lambda n: (4, Reason.DELETED),
        detail="event(s) 3 missing",
    ),
    "events reordered": Case(
        sql(
            "UPDATE events SET seq = -1 WHERE run_id = ? AND seq = 3",
            "UPDATE events SET seq = 3 WHERE run_id = ? AND seq = 4",
            "UPDATE events SET seq = 4 WHERE run_id = ? AND seq = -1",
        ),
        lambda n: (3, Reason.REORDERED),
    ),
    "status edited": Case(
        sql("UPDATE runs SET status = 'FAILED' WHERE run_id = ?"),
        lambda n: (n, Reason.RECORD),
        detail="the run's status is FAILED, its log says COMPLETED",
    ),
    "status unknown": Case(
        sql("UPDATE runs SET status = 'forged' WHERE run_id = ?"),
        lambda n: (0, M),
        detail="the run's status 'forged' is not a status",
    ),
    "workflow edited": Case(
        sql("UPDATE runs SET workflow = '[red]other[/red]' WHERE run_id = ?"),
        lambda n: (1, Reason.RECORD),
        detail="the run's workflow is '[red]other[/red]', its log says 'tampered'",
    ),
    "snapshot value edited": Case(
        per_kind(
            sqlite=[
                "UPDATE snapshots SET state = replace(state, 'alice', 'mallory') WHERE run_id = ?"
            ],
            postgres=[
                "UPDATE snapshots SET state = replace(state::text, 'alice', 'mallory')"
                "::json WHERE run_id = ?"
            ],
        ),
        lambda n: (n, Reason.SNAPSHOT),
        detail="the snapshot's values.who is not what the log folds to",
    ),
    "snapshot status edited": Case(
        per_kind(
            sqlite=[
                "UPDATE snapshots SET state = replace(state, 'COMPLETED', 'FAILED') "
                "WHERE run_id = ?"
            ],
            postgres=[
                "UPDATE snapshots SET state = replace(state::text, 'COMPLETED', 'FAILED')"
                "::json WHERE run_id = ?"
            ],
        ),
        lambda n: (n, Reason.SNAPSHOT),
        detail="the snapshot's status",
    ),
    "snapshot not JSON": Case(
        sql("UPDATE snapshots SET state = '{' WHERE run_id = ?"),
        lambda n: (n, M),
        detail="the snapshot's state is not JSON",
        kinds=("sqlite",),
    ),
    "snapshot ahead of the log": Case(
        sql("UPDATE snapshots SET seq = seq + 5 WHERE run_id = ?"),
        lambda n: (n + 5, Reason.SNAPSHOT),
        detail=" the log has events 1..",
    ),
    "run row deleted": Case(
        sql("DELETE FROM runs WHERE run_id = ?"),
        lambda n: (0, Reason.ORPHANED),
    ),
    "tail truncated": Case(
        lambda db, runs: db.execute(
            "DELETE FROM events WHERE run_id = ? AND seq >= ?",
            params=(runs.victim, runs.events - 1),
        ),
        lambda n: (2, Reason.RECORD),  # the row still says COMPLETED: caught even so
        anchored=lambda n: (n - 1, Reason.TRUNCATED),
    ),
    "tail rewritten": Case(
        rewrite_tail,
        lambda n: None,  # a valid chain: without an anchor, nothing to see
        anchored=lambda n: (n, Reason.REWRITTEN),
    ),
    "run removed": Case(
        sql(
            "DELETE FROM events WHERE run_id = ?",
            "DELETE FROM snapshots WHERE run_id = ?",
            "DELETE FROM runs WHERE run_id = ?",
        ),
        lambda n: None,  # gone without a trace, unless anchored
        anchored=lambda n: (0, Reason.VANISHED),
    ),
}


def broken_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("broken: run ")]


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_named_and_the_other_runs_still_checked(db: Db, runs: Runs, case: str) -> None:
    spec = CASES[case]
    if db.kind not in spec.kinds:
        pytest.skip(f"{db.kind} refuses this edit: it cannot be stored there")
    spec.tamper(db, runs)
    anchors = parse_anchors(runs.anchors.read_text())
    gone = case == "run removed"
    for expected, given in ((spec.plain, None), (spec.anchored or spec.plain, anchors)):
        want = expected(runs.events)
        checks = api_checks(db, given)
        assert len(checks) == (2 if gone and given is None else 3)
        by_run = {c.run_id: c.broken for c in checks}
        assert all(by_run[other] is None for other in runs.others), by_run
        found = by_run.get(runs.victim)
        if want is None:
            assert found is None
        else:
            assert found is not None
            assert (found.seq, found.reason) == want, found
            assert spec.detail in found.detail

        options = ["--anchor", str(runs.anchors)] if given is not None else []
        code, out, err = invoke("audit", "verify", "--store", db.url, *options)
        if want is None:
            assert code == 0, err
            assert f"ok: {len(checks)} run(s), every event chain verifies" in out
            continue
        assert code == 1, out + err
        assert found is not None
        assert broken_lines(err) == [f"broken: {found}"], err  # one line, printed literally
        assert f"broken: 1 of {len(checks)} run(s) broken" in err


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Db:
    return Db("sqlite", path=tmp_path / "audit.db")


@pytest.fixture
def sqlite_runs(sqlite_db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    return record_runs(sqlite_db, tmp_path, monkeypatch)


def test_every_broken_run_is_reported(sqlite_db: Db, sqlite_runs: Runs) -> None:
    victim, *others = [sqlite_runs.victim, *sqlite_runs.others]
    sqlite_db.execute(
        "UPDATE events SET type = 'forged' WHERE run_id = ? AND seq = 3", params=(victim,)
    )
    sqlite_db.execute("UPDATE runs SET status = 'CANCELLED' WHERE run_id = ?", params=(others[0],))
    code, _, err = invoke("audit", "verify", "--store", sqlite_db.url)
    assert code == 1
    lines = broken_lines(err)
    assert len(lines) == 2
    assert any(f"run {victim} event 3: malformed" in line for line in lines)
    assert any(f"run {others[0]} " in line and ": record (" in line for line in lines)
    assert "broken: 2 of 3 run(s) broken" in err


def test_a_named_run_is_checked_alone(sqlite_db: Db, sqlite_runs: Runs) -> None:
    sqlite_db.execute(
        "UPDATE events SET type = 'forged' WHERE run_id = ? AND seq = 3",
        params=(sqlite_runs.victim,),
    )
    code, out, _ = invoke("audit", "verify", sqlite_runs.others[0], "--store", sqlite_db.url)
    assert code == 0 and "ok: 1 run(s)" in out
    code, _, err = invoke("audit", "verify", sqlite_runs.victim, "--store", sqlite_db.url)
    assert code == 1 and len(broken_lines(err)) == 1
    code, _, err = invoke("audit", "verify", "nobody", "--store", sqlite_db.url)
    assert code == 2 and "no run with id 'nobody'" in err


def test_values_merged_by_a_reducer_need_the_definition(sqlite_db: Db, sqlite_runs: Runs) -> None:
    """``n`` is written twice: without the definition its snapshot value cannot be folded (a
    reducer might merge it), so only --workflow finds the edit."""
    sqlite_db.execute(
        "UPDATE snapshots SET state = json_set(state, '$.values.n', 7) WHERE run_id = ?",
        params=(sqlite_runs.victim,),
    )
    code, out, err = invoke("audit", "verify", "--store", sqlite_db.url)
    assert code == 0, err
    assert "ok: 3 run(s)" in out
    assert "state value(s) in the snapshots of 2 run(s) are merged by reducers" in err
    code, _, err = invoke(
        "audit", "verify", "--store", sqlite_db.url, "--workflow", f"{__file__}:workflow"
    )
    assert code == 1
    assert broken_lines(err) == [
        f"broken: run {sqlite_runs.victim} event {sqlite_runs.events}: snapshot "
        "(the snapshot's values.n is not what the log folds to)"
    ]


def test_a_full_snapshot_is_checked_field_by_field(sqlite_db: Db, sqlite_runs: Runs) -> None:
    waiting = sqlite_runs.others[-1]
    sqlite_db.execute(
        "UPDATE snapshots SET state = json_remove(state, '$.done.first') WHERE run_id = ?",
        params=(waiting,),
    )
    code, _, err = invoke("audit", "verify", "--store", sqlite_db.url)
    assert code == 1
    (line,) = broken_lines(err)
    assert f"run {waiting} " in line and "snapshot (the snapshot's done is not" in line


def test_anchor_writes_json_lines_and_skips_broken_runs(sqlite_db: Db, sqlite_runs: Runs) -> None:
    sqlite_db.execute(
        "DELETE FROM events WHERE run_id = ? AND seq = 3", params=(sqlite_runs.victim,)
    )
    code, out, err = invoke("audit", "anchor", "--store", sqlite_db.url)
    assert code == 1
    anchored = [json.loads(line) for line in out.splitlines()]
    assert sorted(a["run_id"] for a in anchored) == sorted(sqlite_runs.others)
    assert all(set(a) == {"run_id", "seq", "hash"} for a in anchored)
    assert len(broken_lines(err)) == 1 and "anchored 2 run(s)" in err
    code, out, _ = invoke("audit", "anchor", sqlite_runs.others[0], "--store", sqlite_db.url)
    assert code == 0 and len(out.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"run_id": "r", "seq": 1, "hash": "' + "a" * 64 + '"}\nnot json\n', ":2: not JSON"),
        ("\n[1, 2]\n", ":2: expected a JSON object, got an array"),
        ('{"run_id": "r", "hash": "' + "a" * 64 + '"}', ':1: "seq" must be an integer >= 1'),
        ('{"run_id": "r", "seq": 1, "hash": "xyz"}', ':1: "hash" must be 64 lowercase hex'),
        ('{"seq": 1, "hash": "' + "a" * 64 + '"}', ':1: "run_id" must be a non-empty string'),
        (
            '{"run_id": "r", "seq": 1, "hash": "' + "a" * 64 + '"}\n'
            '{"run_id": "r", "seq": 1, "hash": "' + "b" * 64 + '"}\n',
            ":2: run r event 1 has another hash on line 1",
        ),
    ],
)
def test_a_malformed_anchor_file_is_one_line_and_exit_2(
    sqlite_db: Db, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "anchors.jsonl"
    path.write_text(content)
    code, out, err = invoke("audit", "verify", "--store", sqlite_db.url, "--anchor", str(path))
    assert code == 2 and not out
    assert err.startswith(f"error: {path}{message}") and len(err.strip().splitlines()) == 1


def test_an_unreadable_anchor_file_is_exit_2(sqlite_db: Db, tmp_path: Path) -> None:
    code, _, err = invoke(
        "audit", "verify", "--store", sqlite_db.url, "--anchor", str(tmp_path / "none.jsonl")
    )
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


def test_runs_show_says_the_status_its_log_says(sqlite_db: Db, sqlite_runs: Runs) -> None:
    sqlite_db.execute(
        "UPDATE runs SET status = 'FAILED' WHERE run_id = ?", params=(sqlite_runs.victim,)
    )
    code, out, err = invoke("runs", "show", sqlite_runs.victim, "--store", sqlite_db.url)
    assert code == 0
    assert "COMPLETED" in out.splitlines()[0] and "FAILED" not in out
    assert "the stored status of run" in err and "its log says COMPLETED" in err
    code, out, err = invoke("runs", "show", sqlite_runs.victim, "--store", sqlite_db.url, "--json")
    assert code == 0 and json.loads(out)["status"] == "COMPLETED"
    code, _, err = invoke("runs", "show", sqlite_runs.others[0], "--store", sqlite_db.url)
    assert code == 0 and "warning" not in err


def test_export_of_an_undecodable_log_is_an_error_not_a_traceback(
    sqlite_db: Db, sqlite_runs: Runs
) -> None:
    sqlite_db.execute(
        "UPDATE events SET type = 'forged' WHERE run_id = ? AND seq = 3",
        params=(sqlite_runs.victim,),
    )
    code, _, err = invoke("audit", "export", sqlite_runs.victim, "--store", sqlite_db.url)
    assert code == 2 and f"cadenza audit verify {sqlite_runs.victim}" in err


# -- the pure parts -----------------------------------------------------------------------------

ROW = StoredEvent(1, "run_created", "", "", 0, "{}", 1.5, "", "h")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"seq": None}, "seq is NULL, not an integer"),
        ({"seq": True}, "seq is True, not an integer"),
        ({"attempt": 1.0}, "attempt is 1.0, not an integer"),
        ({"path": 3}, "path is 3, not text"),
        ({"data": b"{}"}, "data is 2 bytes (a BLOB, or text that is not UTF-8), not text"),
        ({"ts": "noon"}, "ts is 'noon', not a number"),
        ({"ts": False}, "ts is False, not a number"),
        ({"type": "x" * 100}, "is not an event type"),
        ({"data": "nul"}, "data is not JSON: Expecting value"),
        ({"data": '"text"'}, "data is a JSON str, not an object"),
        ({"data": "[" * 100_000}, "data is"),
    ],
)
def test_a_row_that_no_store_writes_is_described(changes: dict[str, Any], problem: str) -> None:
    fields = {name: getattr(ROW, name) for name in ROW.__dataclass_fields__}
    described = decode_event(RunId("r"), StoredEvent(**{**fields, **changes}))
    assert isinstance(described, str) and problem in described
    assert len(described) < 200


def test_a_well_formed_row_decodes() -> None:
    event = decode_event(RunId("r"), ROW)
    assert event == Event(RunId("r"), 1, EventType.RUN_CREATED, ts=1.5)


def test_a_langgraph_thread_starts_in_its_first_checkpoints_status() -> None:
    from cadenza.langgraph.checkpoint._runlog import RUN_VERSION

    assert THREAD_VERSION == RUN_VERSION
    created = Event(RunId("t"), 1, EventType.RUN_CREATED, data={"version": THREAD_VERSION})

    def checkpoint(**data: Any) -> Event:
        return Event(RunId("t"), 2, EventType.STEP_COMPLETED, "step 0", data=data)

    assert log_statuses([created, checkpoint(next=["a"])]) == {
        S.RUNNING,
        S.WAITING_APPROVAL,
        S.FAILED,
    }
    assert S.COMPLETED in log_statuses([created, checkpoint(next=[])])
    assert log_statuses([created, checkpoint(next=[], checkpoint_ns="sub")]) == {S.RUNNING}
    moved = Event(RunId("t"), 3, EventType.STATUS, data={"from": "RUNNING", "to": "FAILED"})
    assert log_statuses([created, checkpoint(next=["a"]), moved]) == {S.FAILED}
    assert log_statuses([Event(RunId("r"), 1, EventType.RUN_CREATED)]) == {S.INITIALIZING}


def test_an_empty_log_is_a_vanished_run() -> None:
    from cadenza.store.base import StoredLog

    empty = StoredLog(RunId("r"), None, [], None)
    assert check_run(empty).broken == Broken(
        RunId("r"), 0, Reason.VANISHED, "nothing is stored under this id"
    )
    assert check_run(empty, anchor=(4, "a" * 64)).broken == Broken(
        RunId("r"),
        0,
        Reason.VANISHED,
        "it was anchored at event 4, and nothing is stored under this id",
    )


def test_anchor_files_round_trip_and_keep_the_latest_head() -> None:
    heads = [(RunId("r1"), 3, "a" * 64), (RunId("r2"), 9, "b" * 64)]
    text = anchor_lines(heads)
    assert parse_anchors(text) == {RunId("r1"): (3, "a" * 64), RunId("r2"): (9, "b" * 64)}
    later = text + "\n" + anchor_lines([(RunId("r1"), 5, "c" * 64)]) + anchor_lines(heads[:1])
    assert parse_anchors(later)[RunId("r1")] == (5, "c" * 64)
    with pytest.raises(AnchorError) as raised:
        parse_anchors('{"run_id": "r", "seq": 0, "hash": "' + "a" * 64 + '"}')
    assert raised.value.line == 1


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        ("UPDATE runs SET status = 'forged' WHERE run_id = ?", "its row"),
        ("UPDATE events SET type = 'forged' WHERE run_id = ? AND seq = 2", "event 2"),
    ],
)
def test_reading_a_damaged_run_is_one_line_not_a_traceback(
    sqlite_db: Db, sqlite_runs: Runs, edit: str, what: str
) -> None:
    sqlite_db.execute(edit, params=(sqlite_runs.victim,))
    for command in (["runs", "show", sqlite_runs.victim], ["runs", "list"]):
        code, _, err = invoke(*command, "--store", sqlite_db.url)
        if command[1] == "list" and what != "its row":
            assert code == 0  # listing reads no events
            continue
        assert code == 2 and "Traceback" not in err, err
        assert f"{what} in the store does not decode" in err
        assert len(err.strip().splitlines()) == 1
