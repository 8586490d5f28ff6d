"""Idempotent starts: the same ``Idempotency-Key`` and body give the same run, another body
409; many concurrent requests with one key start one run, within a server and across servers
sharing a database (the store's primary key decides, not memory)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cadenza.server.service import Server
from tests.server.fixtures import Api, catalog, config, serving


async def test_a_retried_start_returns_the_same_run(api: Api) -> None:
    ops = await api.key("ops")
    headers = {**ops, "Idempotency-Key": "order-1234"}
    body = {"input": {"amount": 10}}
    first = await api.client.post("/v1/workflows/orders/runs", json=body, headers=headers)
    again = await api.client.post("/v1/workflows/orders/runs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["run_id"] == again.json()["run_id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.client.post(
        "/v1/workflows/orders/runs", json={"input": {"amount": 11}}, headers=headers
    )
    assert other.status_code == 409
    assert "used before with a different request" in other.json()["detail"]
    # keys belong to their caller: another caller's same key is another run
    omar = await api.key("omar")
    theirs = await api.client.post(
        "/v1/workflows/orders/runs", json=body, headers={**omar, "Idempotency-Key": "order-1234"}
    )
    assert theirs.status_code == 201 and theirs.json()["run_id"] != first.json()["run_id"]
    bad = await api.client.post(
        "/v1/workflows/orders/runs", json=body, headers={**ops, "Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422


async def test_a_refused_start_leaves_the_key_free(api: Api) -> None:
    root = await api.key("root")
    headers = {**root, "Idempotency-Key": "k"}
    refused = await api.client.post("/v1/workflows/secret/runs", json={}, headers=headers)
    assert refused.status_code == 403
    assert await api.server.tables.reservation("key:root", "k") is None
    started = await api.client.post("/v1/workflows/orders/runs", json={}, headers=headers)
    assert started.status_code == 201


async def _storm(
    clients: list[Api], headers: dict[str, str], keys: int, each: int
) -> dict[str, set[str]]:
    """``each`` concurrent POSTs for every one of ``keys`` keys, spread over ``clients``;
    the run ids each key's answers named."""

    async def post(client: Api, key: str) -> tuple[str, Any]:
        answer = await client.client.post(
            "/v1/workflows/orders/runs",
            json={"input": {"note": key}},
            headers={**headers, "Idempotency-Key": key},
        )
        return key, answer

    calls = [
        post(clients[(k * each + i) % len(clients)], f"key-{k}")
        for k in range(keys)
        for i in range(each)
    ]
    named: dict[str, set[str]] = {}
    for key, answer in await asyncio.gather(*calls):
        assert answer.status_code in (200, 201), answer.text
        named.setdefault(key, set()).add(answer.json()["run_id"])
    return named


async def test_100_concurrent_posts_with_each_of_20_keys_start_20_runs(api: Api) -> None:
    ops = await api.key("ops")
    named = await _storm([api], ops, keys=20, each=100)
    assert all(len(runs) == 1 for runs in named.values())
    runs = (await api.client.get("/v1/runs?limit=500", headers=ops)).json()["runs"]
    assert len(runs) == 20
    assert {r["input"]["note"]: r["run_id"] for r in runs} == {
        key: next(iter(ids)) for key, ids in named.items()
    }


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_servers_sharing_a_database_agree_on_each_key(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where: Any = tmp_path / "shared.db" if store == "sqlite" else request.getfixturevalue("pg_url")
    first = Server(where, config=config(), catalog=catalog(), workers_inline=0)
    second = Server(where, config=config(), catalog=catalog(), workers_inline=0)
    async with serving(first) as one, serving(second) as two:
        ops = await one.key("ops")
        named = await _storm([one, two], ops, keys=10, each=20)
        assert all(len(runs) == 1 for runs in named.values())
        listed = (await one.client.get("/v1/runs?limit=500", headers=ops)).json()["runs"]
        assert len(listed) == 10
        assert {r["status"] for r in listed} == {"INITIALIZING"}  # queued for workers
