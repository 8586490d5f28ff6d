"""The native API in process: workflows, starting runs (input checked with JSON paths),
listing with filters and cursors, a run, its events and state after any event, and the
commands that change a run's course; every error a problem document."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.server import flows
from tests.server.fixtures import Api, until

PROBLEM = "application/problem+json"


def problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    assert "\n" not in body["detail"]
    return body


async def test_workflows_definition_graph_and_versions(api: Api) -> None:
    ops = await api.key("ops")
    listed = (await api.client.get("/v1/workflows", headers=ops)).json()
    assert [w["name"] for w in listed] == ["flaky", "gated", "orders", "waiter"]  # not secret
    one = (await api.client.get("/v1/workflows/orders", headers=ops)).json()
    assert one["steps"] == ["check", "finish"]
    assert one["state"]["amount"] == "float|last"
    definition = (await api.client.get("/v1/workflows/gated/definition", headers=ops)).json()
    assert definition["version"] == flows.gated.compile().version
    assert definition["ir"]["graph"]["steps"][0]["kind"] == "human_approval"
    assert definition["source"] is None
    graph = (await api.client.get("/v1/workflows/gated/graph", headers=ops)).json()
    assert graph["graph"].startswith("flowchart TD")
    dot = await api.client.get("/v1/workflows/gated/graph", params={"format": "dot"}, headers=ops)
    assert dot.json()["graph"].startswith("digraph")
    await api.start(ops, "orders", input={"amount": 1})
    versions = (await api.client.get("/v1/workflows/orders/versions", headers=ops)).json()
    assert [(v["loaded"], v["current"], v["runs"]) for v in versions] == [(True, True, 1)]
    problem(await api.client.get("/v1/workflows/secret", headers=ops), 404)
    problem(await api.client.get("/v1/workflows/nope/definition", headers=ops), 404)


async def test_yaml_source_is_served_as_written(tmp_path: Any) -> None:
    from cadenza.server.catalog import Catalog
    from cadenza.server.service import Server
    from tests.server.fixtures import config, serving

    text = (
        "# a comment kept as written\nname: tiny\nsteps:\n"
        "  - {type: WAIT, name: pause, seconds: 0}\n"
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    server = Server(tmp_path / "y.db", config=config(), catalog=Catalog.load([str(path)]))
    async with serving(server) as api:
        ops = await api.key("ops")
        definition = (await api.client.get("/v1/workflows/tiny/definition", headers=ops)).json()
    assert definition["source"] == text and definition["source_format"] == "yaml"


async def test_start_checks_input_with_json_paths(api: Api) -> None:
    ops = await api.key("ops")
    answer = await api.client.post(
        "/v1/workflows/orders/runs",
        json={"input": {"amount": "lots", "items": [1, "two"], "colour": "red"}},
        headers=ops,
    )
    body = problem(answer, 422)
    paths = {e["path"] for e in body["errors"]}
    assert paths == {"$.body.input.colour", "$.body.input.amount", "$.body.input.items[1]"}
    body = problem(
        await api.client.post("/v1/workflows/orders/runs", json={"inputs": {}}, headers=ops), 422
    )
    assert body["errors"][0]["path"] == "$.body.inputs"
    body = problem(
        await api.client.post("/v1/workflows/orders/runs", content=b"{", headers=ops), 422
    )
    answer = await api.client.post(
        "/v1/workflows/orders/runs", json={"input": {"odd key": 1}}, headers=ops
    )
    assert problem(answer, 422)["errors"][0]["path"] == "$.body.input['odd key']"


async def test_a_run_its_events_and_its_state_after_each_event(api: Api) -> None:
    ops = await api.key("ops")
    run_id = await api.start(ops, "orders", input={"amount": 12.5})
    run = await api.settled(ops, run_id)
    assert run["status"] == "COMPLETED"
    assert run["state"] == {"amount": 12.5, "note": "checked 12.5", "done": True}
    events = await api.events(ops, run_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_created" and events[-1]["data"]["to"] == "COMPLETED"
    page = (await api.client.get(f"/v1/runs/{run_id}/events?limit=2", headers=ops)).json()
    assert [e["seq"] for e in page["events"]] == [1, 2] and page["next_after_seq"] == 2
    rest = await api.client.get(
        f"/v1/runs/{run_id}/events", params={"after_seq": 2, "limit": 100}, headers=ops
    )
    assert rest.json()["events"][0]["seq"] == 3 and rest.json()["next_after_seq"] is None
    completed = [e["seq"] for e in events if e["type"] == "step_completed"]
    after_check = await api.client.get(
        f"/v1/runs/{run_id}/state", params={"seq": completed[0]}, headers=ops
    )
    assert after_check.json()["state"] == {"amount": 12.5, "note": "checked 12.5"}
    assert after_check.json()["status"] == "RUNNING"
    first = (await api.client.get(f"/v1/runs/{run_id}/state?seq=1", headers=ops)).json()
    assert first["state"] == {"amount": 12.5} and first["status"] == "INITIALIZING"
    problem(await api.client.get(f"/v1/runs/{run_id}/state?seq=999", headers=ops), 404)
    problem(await api.client.get("/v1/runs/not-a-run", headers=ops), 404)


async def test_listing_filters_and_pages_in_a_stable_order(api: Api) -> None:
    ops = await api.key("ops")
    started = [await api.start(ops, "orders", input={"amount": i}) for i in range(7)]
    waiting = await api.start(ops, "gated")
    await api.settled(ops, waiting, "WAITING_APPROVAL")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow": "orders", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/runs", params=params, headers=ops)).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(started) and len(seen) == 7
    everything = (await api.client.get("/v1/runs", headers=ops)).json()["runs"]
    keys = [(r["created_at"], r["run_id"]) for r in everything]
    assert keys == sorted(keys, reverse=True)
    gated = await api.client.get("/v1/runs", params={"status": ["WAITING_APPROVAL"]}, headers=ops)
    assert [r["run_id"] for r in gated.json()["runs"]] == [waiting]
    first_created = everything[-1]["created_at"]
    later = await api.client.get(
        "/v1/runs", params={"created_after": first_created + 1e-6}, headers=ops
    )
    assert started[0] not in [r["run_id"] for r in later.json()["runs"]]
    body = problem(await api.client.get("/v1/runs?status=DONE", headers=ops), 422)
    assert body["errors"][0]["path"] == "$.query.status[0]"
    body = problem(await api.client.get("/v1/runs?cursor=garbage", headers=ops), 422)
    assert body["errors"][0]["path"] == "$.query.cursor"


async def test_cancel_pause_unpause_and_signal(api: Api) -> None:
    ops = await api.key("ops")
    held = await api.start(ops, "waiter")
    await until(
        lambda: _has(api, ops, held, "status", "RUNNING", after="run_created"),
        "the waiter to wait",
    )
    answer = await api.client.post(
        f"/v1/runs/{held}/signals", json={"name": "go", "payload": "now"}, headers=ops
    )
    assert answer.status_code == 200, answer.text
    run = await api.settled(ops, held)
    assert run["state"] == {"note": "now", "done": True}
    signals = [e for e in await api.events(ops, held) if e["type"] == "signal"]
    assert signals[0]["data"] == {"name": "go", "payload": "now", "actor": "ops"}

    doomed = await api.start(ops, "waiter")
    answer = await api.client.post(
        f"/v1/runs/{doomed}/cancel", json={"reason": "not needed"}, headers=ops
    )
    assert answer.status_code == 200 and answer.json()["status"] == "CANCELLED", answer.text
    body = problem(await api.client.post(f"/v1/runs/{doomed}/cancel", headers=ops), 409)
    assert "CANCELLED" in body["detail"]
    body = problem(
        await api.client.post(f"/v1/runs/{doomed}/signals", json={"name": "go"}, headers=ops), 409
    )

    paused = await api.start(ops, "waiter")
    answer = await api.client.post(f"/v1/runs/{paused}/pause", headers=ops)
    assert answer.status_code == 200 and answer.json()["status"] == "PAUSED", answer.text
    answer = await api.client.post(f"/v1/runs/{paused}/unpause", headers=ops)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] in ("RUNNING", "WAITING_APPROVAL")


async def _has(
    api: Api, headers: dict[str, str], run_id: str, kind: str, to: str, after: str
) -> bool:
    events = await api.events(headers, run_id)
    return any(e["type"] == kind and e["data"].get("to") == to for e in events) and any(
        e["type"] == after for e in events
    )


async def test_retry_and_fork_make_linked_runs(api: Api) -> None:
    ops = await api.key("ops")
    flows.FAILING["on"] = True
    try:
        failed = await api.start(ops, "flaky")
        assert (await api.settled(ops, failed))["status"] == "FAILED"
        problem(await api.client.post(f"/v1/runs/{failed}/unpause", headers=ops), 409)
    finally:
        flows.FAILING["on"] = False
    answer = await api.client.post(f"/v1/runs/{failed}/retry", headers=ops)
    assert answer.status_code == 201, answer.text
    again = answer.json()
    assert again["parent_run_id"] == failed and again["run_id"] != failed
    assert answer.headers["location"] == f"/v1/runs/{again['run_id']}"
    assert (await api.settled(ops, again["run_id"]))["state"]["done"] is True

    source = await api.start(ops, "orders", input={"amount": 5})
    await api.settled(ops, source)
    answer = await api.client.post(
        f"/v1/runs/{source}/fork",
        json={"from_step": "check", "set": {"amount": 9}},
        headers=ops,
    )
    assert answer.status_code == 201, answer.text
    fork = await api.settled(ops, answer.json()["run_id"])
    assert fork["parent_run_id"] == source
    assert fork["state"]["amount"] == 9 and fork["state"]["note"] == "checked 5.0"
    body = problem(
        await api.client.post(
            f"/v1/runs/{source}/fork",
            json={"from_step": "check", "set": {"amount": "x"}},
            headers=ops,
        ),
        422,
    )
    assert body["errors"][0]["path"] == "$.body.set.amount"
    children = await api.client.get("/v1/runs", params={"parent": source}, headers=ops)
    assert [r["run_id"] for r in children.json()["runs"]] == [fork["run_id"]]


async def test_concurrent_forks_each_get_their_own_run(api: Api) -> None:
    ops = await api.key("ops")
    source = await api.start(ops, "orders", input={"amount": 1})
    await api.settled(ops, source)
    answers = await asyncio.gather(
        *(
            api.client.post(
                f"/v1/runs/{source}/fork",
                json={"from_step": "check", "set": {"amount": i}},
                headers=ops,
            )
            for i in range(5)
        )
    )
    forks = [a.json()["run_id"] for a in answers]
    assert len(set(forks)) == 5
    amounts = [(await api.settled(ops, f))["state"]["amount"] for f in forks]
    assert amounts == [0, 1, 2, 3, 4]


async def test_approvals_listed_shown_and_decided(api: Api) -> None:
    ops, olivia = await api.key("ops"), await api.key("olivia", [])
    run_id = await api.start(ops, "gated", input={"amount": 25000})
    await api.settled(ops, run_id, "WAITING_APPROVAL")
    pending = (await api.client.get("/v1/approvals", headers=olivia)).json()["approvals"]
    assert [(p["run_id"], p["step"]) for p in pending] == [(run_id, "review")]
    assert (await api.client.get("/v1/approvals", headers=ops)).json()["approvals"] == []
    shown = (await api.client.get(f"/v1/runs/{run_id}/approvals/review", headers=olivia)).json()
    assert shown["show"] == {"amount": 25000.0} and shown["summary"] == "Big one"
    assert shown["waiting"] is True and shown["decisions"] == []
    answer = await api.client.post(
        f"/v1/runs/{run_id}/approvals/review",
        json={"approve": True, "comment": "fine [bold]x[/bold]"},
        headers=olivia,
    )
    assert answer.status_code == 200, answer.text
    run = await api.settled(ops, run_id)
    assert run["status"] == "COMPLETED"
    shown = (await api.client.get(f"/v1/runs/{run_id}/approvals/review", headers=olivia)).json()
    assert shown["decisions"] == [
        {"actor": "olivia", "approve": True, "comment": "fine [bold]x[/bold]"}
    ]
    assert shown["waiting"] is False
    problem(await api.client.get(f"/v1/runs/{run_id}/approvals/nope", headers=ops), 404)


async def test_health_readiness_and_the_openapi_document(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    document = (await api.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert "bearer" in document["components"]["securitySchemes"]
    start = document["paths"]["/v1/workflows/{name}/runs"]["post"]
    assert set(start["responses"]) >= {"200", "201", "401", "403", "404", "409", "422"}
    assert "application/problem+json" in start["responses"]["422"]["content"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_bodies_are_bounded_and_text_comes_back_as_written(api: Api) -> None:
    ops = await api.key("ops")
    huge = {"input": {"note": "x" * (2 * 1024 * 1024)}}
    answer = await api.client.post("/v1/workflows/orders/runs", json=huge, headers=ops)
    assert "at most 1048576" in problem(answer, 413)["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"input": {"note": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    answer = await api.client.post(
        "/v1/workflows/orders/runs",
        content=chunks(),
        headers={**ops, "content-type": "application/json"},
    )
    assert "over 1048576 bytes" in problem(answer, 413)["detail"]
    raw = ("[" * 100_000 + "]" * 100_000).encode()
    answer = await api.client.post(
        "/v1/workflows/orders/runs",
        content=b'{"input": {"items": ' + raw + b"}}",
        headers={**ops, "content-type": "application/json"},
    )
    assert problem(answer, 400)["detail"].startswith("the request body is not JSON")
    tricky = "\x1b[2J [bold]<script>\u202e"
    run_id = await api.start(ops, "orders", input={"note": tricky})
    run = await api.settled(ops, run_id)
    assert run["input"]["note"] == tricky


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_unknown_methods_and_routes_are_problems(api: Api, method: str) -> None:
    ops = await api.key("ops")
    problem(await api.client.request(method, "/v1/workflows", headers=ops), 405)
    problem(await api.client.get("/v2/nothing", headers=ops), 404)
