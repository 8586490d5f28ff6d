"""``cadenza.client``: the async client against the API in process, the blocking one against
a server on a loopback socket; errors are ApiError with the problem document; a stream
follows a run to its end and resumes after the last event it gave."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the API needs the server extra: pip install '.[server]'")

from cadenza.client import ApiError, AsyncClient, Client
from cadenza.server.service import Server
from tests.server.fixtures import catalog, config, listening


async def test_the_async_client(tmp_path: Path) -> None:
    async with listening(Server(tmp_path / "c.db", config=config(), catalog=catalog(),
                                poll_interval=0.05)) as (api, url):  # fmt: skip
        await api.key("ops")
        async with AsyncClient(url, api_key=api.keys["ops"]) as client:
            assert [w["name"] for w in await client.workflows()] == [
                "flaky", "gated", "orders", "waiter",
            ]  # fmt: skip
            assert (await client.workflow("orders", "graph"))["format"] == "mermaid"
            run = await client.start("waiter", idempotency_key="k1")
            again = await client.start("waiter", idempotency_key="k1")
            assert run["run_id"] == again["run_id"]
            seen = []
            async for event in client.stream(run["run_id"]):
                seen.append(event)
                if len(seen) == 2:
                    await client.signal(run["run_id"], "go", "now")
            assert seen[-1]["data"]["to"] == "COMPLETED"
            rest = [e async for e in client.stream(run["run_id"], after_seq=seen[-2]["seq"])]
            assert rest == seen[-1:]
            assert (await client.run(run["run_id"]))["state"]["note"] == "now"
            assert (await client.runs(workflow="waiter"))["runs"][0]["run_id"] == run["run_id"]
            with pytest.raises(ApiError) as refused:
                await client.start("orders", {"amount": "lots"})
            assert refused.value.status == 422
            assert refused.value.problem["errors"][0]["path"] == "$.body.input.amount"


def test_the_blocking_client(tmp_path: Path) -> None:
    server = Server(tmp_path / "b.db", config=config(), catalog=catalog(), poll_interval=0.05)
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, str] = {}

    def serve() -> None:
        async def main() -> None:
            async with listening(server) as (api, url):
                await api.key("ops")
                box.update(url=url, key=api.keys["ops"])
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.01)

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(60)
        with Client(box["url"], api_key=box["key"]) as client:
            run = client.start("orders", {"amount": 3})
            events = list(client.stream(run["run_id"]))
            assert events[-1]["data"]["to"] == "COMPLETED"
            assert client.state(run["run_id"])["state"]["done"] is True
            assert client.events(run["run_id"], limit=1)["next_after_seq"] == 1
            with pytest.raises(ApiError, match="404: no run with id 'nope'"):
                client.run("nope")
        with Client(box["url"]) as anonymous, pytest.raises(ApiError) as refused:
            anonymous.workflows()
        assert refused.value.status == 401
    finally:
        stop.set()
        thread.join()
