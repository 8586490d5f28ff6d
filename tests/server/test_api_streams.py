"""Live events over Server-Sent Events, on a real loopback socket: a run's stream sends its
log as it commits and ends when the run has; a dropped connection resumes with
``Last-Event-ID`` without a gap or a repeat; the all-runs stream shows only what the caller
may see; a stream of a hidden run is refused before it starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cadenza.server.service import Server
from tests.server.fixtures import Api, catalog, config, listening, until


async def sse(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The events of a ``text/event-stream`` (comments skipped)."""
    event: dict[str, Any] = {}
    async for line in lines:
        if not line:
            if event:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.removeprefix(" ")


def _server(db: Path) -> Server:
    return Server(db, config=config(), catalog=catalog(), poll_interval=0.05)


async def test_a_run_stream_follows_the_run_to_its_end(tmp_path: Path) -> None:
    async with listening(_server(tmp_path / "s.db")) as (api, _):
        ops = await api.key("ops")
        run_id = await api.start(ops, "waiter")
        received: list[dict[str, Any]] = []
        sent: list[asyncio.Task[Any]] = []
        async with api.client.stream("GET", f"/v1/runs/{run_id}/stream", headers=ops) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            async for event in sse(answer.aiter_lines()):
                received.append(event)
                if len(received) == 2:  # send its signal while the stream is open
                    post = api.client.post(
                        f"/v1/runs/{run_id}/signals", json={"name": "go"}, headers=ops
                    )
                    sent.append(asyncio.ensure_future(post))
                if event.get("event") == "end":
                    break
        assert (await sent[0]).status_code == 200
        logged = await api.events(ops, run_id)
        streamed = [e for e in received if e.get("event") != "end"]
        assert [int(e["id"]) for e in streamed] == [e["seq"] for e in logged]
        assert [e["data"] for e in streamed] == logged
        assert received[-1] == {"event": "end", "data": {"status": "COMPLETED"}}


async def test_a_dropped_stream_resumes_after_the_last_event_id(tmp_path: Path) -> None:
    async with listening(_server(tmp_path / "r.db")) as (api, _):
        ops = await api.key("ops")
        run_id = await api.start(ops, "waiter")
        await until(lambda: _at_least(api, ops, run_id, 2), "two events")
        first: list[dict[str, Any]] = []
        async with api.client.stream("GET", f"/v1/runs/{run_id}/stream", headers=ops) as answer:
            async for event in sse(answer.aiter_lines()):
                first.append(event)
                if len(first) == 2:
                    break  # the connection drops here
        last = first[-1]["id"]
        await api.client.post(f"/v1/runs/{run_id}/signals", json={"name": "go"}, headers=ops)
        second: list[dict[str, Any]] = []
        headers = {**ops, "Last-Event-ID": last}
        async with api.client.stream("GET", f"/v1/runs/{run_id}/stream", headers=headers) as a:
            async for event in sse(a.aiter_lines()):
                if event.get("event") == "end":
                    break
                second.append(event)
        seqs = [int(e["id"]) for e in first + second]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) == len(await api.events(ops, run_id))
        bad = await api.client.get(
            f"/v1/runs/{run_id}/stream", headers={**ops, "Last-Event-ID": "x"}
        )
        assert bad.status_code == 422


async def _at_least(api: Api, headers: dict[str, str], run_id: str, count: int) -> bool:
    return len(await api.events(headers, run_id)) >= count


async def test_the_all_runs_stream_shows_only_what_the_caller_may_see(tmp_path: Path) -> None:
    async with listening(_server(tmp_path / "a.db")) as (api, _):
        ops, fin = await api.key("ops"), await api.key("fin")
        seen: list[dict[str, Any]] = []
        opened = asyncio.Event()

        async def follow() -> None:
            async with api.client.stream("GET", "/v1/events/stream", headers=ops) as answer:
                assert answer.status_code == 200
                opened.set()
                async for event in sse(answer.aiter_lines()):
                    seen.append(event)
                    if event["data"]["run_id"] == mine and event["data"]["data"].get("to") == (
                        "COMPLETED"
                    ):
                        return

        mine = ""
        follower = asyncio.ensure_future(follow())
        await opened.wait()
        hidden = await api.start(fin, "secret")
        await api.settled(fin, hidden)
        mine = await api.start(ops, "orders")
        await asyncio.wait_for(follower, 60)
        runs = {e["data"]["run_id"] for e in seen}
        assert runs == {mine}
        assert [e["id"] for e in seen] == [f"{mine}:{e['data']['seq']}" for e in seen]
        assert [e["data"]["seq"] for e in seen] == list(range(1, len(seen) + 1))
        refused = await api.client.get(f"/v1/runs/{hidden}/stream", headers=ops)
        assert refused.status_code == 404
