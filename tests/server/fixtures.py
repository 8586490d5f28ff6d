"""Fixtures for the API tests: a server on a SQLite file in a temporary folder, serving the
workflows of ``flows.py``, driven in process through ``httpx.ASGITransport``; users and their
keys made per test."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cadenza.identity import Directory
from cadenza.server.app import create_app
from cadenza.server.auth import keys as api_keys
from cadenza.server.catalog import Catalog, Entry
from cadenza.server.config import ServerConfig
from cadenza.server.service import Server
from tests.server import flows

T = TypeVar("T")

#: Generous bound for anything to happen: only a hang fails on it, never a slow machine.
PATIENCE = 60.0

USERS = {
    "olivia": frozenset({"compliance_officer"}),
    "omar": frozenset({"compliance_officer", "operator"}),
    "victor": frozenset({"viewer"}),
    "ops": frozenset({"operator"}),
    "fin": frozenset({"finance", "operator"}),
    "root": frozenset({"admin"}),
    "maya": frozenset({"content_moderator", "viewer"}),
}
IDENTITIES = {f"key:{name}": name for name in USERS}
WORKFLOWS = [flows.orders, flows.gated, flows.secret, flows.waiter, flows.flaky]


def catalog(*extra: Any) -> Catalog:
    entries = []
    for workflow in [*WORKFLOWS, *extra]:
        ir = workflow.compile()
        entries.append(Entry(ir, workflow, f"tests.server.flows:{ir.name}"))
    return Catalog(entries)


def config(**changes: Any) -> ServerConfig:
    settings: dict[str, Any] = {
        "directory": Directory(dict(USERS)),
        "identities": dict(IDENTITIES),
    }
    settings.update(changes)
    return ServerConfig(**settings)


@dataclass
class Api:
    """A server and a client of it, and keys to call it with."""

    server: Server
    client: httpx.AsyncClient
    keys: dict[str, str] = field(default_factory=dict)

    async def key(
        self, name: str, roles: list[str] | None = None, *, lifetime: float | None = None
    ) -> dict[str, str]:
        """Headers with a new key named ``name`` (roles: its user's server roles)."""
        if roles is None:
            roles = sorted(USERS.get(name, frozenset()) & {"viewer", "operator", "admin"})
        key, record = api_keys.generate(name, roles, now=time.time(), lifetime=lifetime)
        await self.server.tables.add_key(record)
        self.keys[name] = key
        return {"Authorization": f"Bearer {key}"}

    async def start(self, headers: dict[str, str], workflow: str, **body: Any) -> str:
        answer = await self.client.post(
            f"/v1/workflows/{workflow}/runs", json=body, headers=headers
        )
        assert answer.status_code == 201, answer.text
        run_id: str = answer.json()["run_id"]
        return run_id

    async def run(self, headers: dict[str, str], run_id: str) -> dict[str, Any]:
        answer = await self.client.get(f"/v1/runs/{run_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        run: dict[str, Any] = answer.json()
        return run

    async def settled(self, headers: dict[str, str], run_id: str, *statuses: str) -> dict[str, Any]:
        """The run once its status is one of ``statuses`` (default: a terminal one)."""
        wanted = statuses or ("COMPLETED", "FAILED", "CANCELLED")

        async def check() -> dict[str, Any] | None:
            run = await self.run(headers, run_id)
            return run if run["status"] in wanted else None

        return await until(check, f"run {run_id} to be {' or '.join(wanted)}")

    async def events(self, headers: dict[str, str], run_id: str) -> list[dict[str, Any]]:
        answer = await self.client.get(
            f"/v1/runs/{run_id}/events", params={"limit": 1000}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events


async def until(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``check`` until it gives something; fail (naming ``what``) after PATIENCE."""
    limit = time.monotonic() + PATIENCE
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError(f"gave up after {PATIENCE:g}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "api.db"


@pytest.fixture
async def api(db: Path) -> AsyncIterator[Api]:
    async with serving(Server(db, config=config(), catalog=catalog(), poll_interval=0.05)) as a:
        yield a


class serving:
    """``async with serving(server) as api``: the server opened and a client on its app."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Api:
        await self.server.open()
        app = create_app(self.server)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cadenza.test"
        )
        return Api(self.server, self.client)

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.aclose()
        await self.server.close()


PG_SERVER = os.environ.get("CADENZA_PG") or "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards), as a URL; skips without a
    server."""
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from psycopg import sql

    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3) as conn:
            name = f"cadenza_api_{uuid.uuid4().hex[:12]}"
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not available at {PG_SERVER}: {exc}")
    try:
        yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class listening:
    """``async with listening(server) as (api, url)``: the server's app on a real loopback
    socket (uvicorn in this event loop), for what an in-process transport cannot carry:
    streams that do not end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.web: Any = None
        self.task: asyncio.Task[None] | None = None
        self.client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> tuple[Api, str]:
        import uvicorn

        await self.server.open()
        app = create_app(self.server)
        self.web = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        # _serve, not serve: serve() takes over SIGINT and SIGTERM, which are pytest's
        self.task = asyncio.ensure_future(self.web._serve())
        await until(lambda: _started(self.web, self.task), "uvicorn to listen")
        port = self.web.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=url, timeout=PATIENCE)
        return Api(self.server, self.client), url

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None and self.task is not None
        await self.client.aclose()
        self.web.should_exit = True
        await self.task
        await self.server.close()


async def _started(web: Any, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return bool(web.started)
