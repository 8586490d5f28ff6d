"""Fixtures for the distributed tests: a fresh PostgreSQL database per test (created and
dropped here; every test is skipped when the server at ``$CADENZA_PG``, default
``postgresql://postgres@127.0.0.1:5432/postgres``, cannot be reached), the side-effect table
the test workflows write to, and worker processes started with ``cadenza worker``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("psycopg_pool", reason="psycopg[pool] is not installed")

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SERVER = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"
HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"
FLOWS = HERE / "flows.py"

EFFECTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS effects (id bigserial PRIMARY KEY, key text NOT NULL, "
    "step text NOT NULL, attempt integer NOT NULL, pid integer NOT NULL, "
    "at double precision NOT NULL)"
)
GATES_TABLE = "CREATE TABLE IF NOT EXISTS gates (name text PRIMARY KEY)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chaos: kills worker processes at random while thousands of runs execute "
        "(CADENZA_CHAOS_RUNS, CADENZA_CHAOS_WORKERS scale it; deselect with -m 'not chaos')",
    )


def _server_problem() -> str | None:
    try:
        with psycopg.connect(SERVER, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


@pytest.fixture
def dsn() -> Iterator[str]:
    """A new, empty database on the test server; dropped (with its connections) afterwards."""
    problem = _server_problem()
    if problem is not None:
        pytest.skip(f"PostgreSQL not available at {SERVER}: {problem}")
    name = f"cadenza_dist_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(SERVER, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EFFECTS_TABLE)
        conn.execute(GATES_TABLE)
    try:
        yield _as_url(url)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL (what ``--store`` and ``Engine`` recognise) for ``conninfo``."""
    info = conninfo_to_dict(conninfo)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{info['dbname']}"


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[object]:
    from cadenza.store.postgres import PostgresStore

    async with PostgresStore(dsn) as opened:
        yield opened


class Workers:
    """``cadenza worker`` processes on one database, their output in files under ``logs``."""

    def __init__(self, dsn: str, logs: Path) -> None:
        self.dsn = dsn
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC), str(HERE.parents[1]), env.get("PYTHONPATH", "")]
        )
        env["CADENZA_TEST_DSN"] = self.dsn
        env.pop("CADENZA_STORE", None)
        env.pop("CADENZA_DB", None)
        return env

    def start(
        self, *args: str, workflow: str = "chaos", lease: float = 2.0
    ) -> subprocess.Popen[bytes]:
        self.count += 1
        log = self.logs / f"worker-{self.count}.log"
        cmd = [
            sys.executable, "-m", "cadenza.cli", "worker", "--store", self.dsn,
            "--workflow", f"{FLOWS}:{workflow}", "--lease", str(lease), "--log-level", "INFO",
            *args,
        ]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(dsn, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
