"""WEBHOOK steps against a real HTTP server on 127.0.0.1: bodies, headers, signatures,
retries (Retry-After, timeouts, refused connections) and definite refusals.

The receivers listen on loopback over plain http, which the egress policy refuses unless
allow-listed: each workflow here allow-lists its receiver's origin in ``webhook_allow``, as
an operator does for an internal service (``test_webhook_egress.py`` checks the refusals)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from tests.http_stub import Reply, Stub

from cadenza import BreakerConfig, Engine, MemoryStore, RetryPolicy, Workflow
from cadenza.graph.ir import Step, StepKind, StepPolicy
from cadenza.steps.webhook import aclose_clients, verify_signature

RETRY3 = RetryPolicy(max_attempts=3, initial_delay=0, jitter=0)


class S(TypedDict, total=False):
    order_id: str
    items: list[str]
    reply: Any


@pytest.fixture(autouse=True)
async def _webhooks(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Close the shared HTTP client after each test (each has its own event loop)."""
    yield
    await aclose_clients()


def hook(name: str, policy: StepPolicy | None = None, config: Any = None, **options: Any):
    """A workflow of one WEBHOOK step, ``notify``, as the front ends build it, allow-listing
    the origin of its endpoint (unless ``config`` sets ``webhook_allow`` itself)."""
    defaults = {"method": "POST", "payload": None, "output": None, "headers": {}}
    opts = {**defaults, "secret_env": None, **options}
    config = dict(config or {})
    config.setdefault("webhook_allow", [origin(opts["endpoint"])] if opts.get("endpoint") else [])
    wf = Workflow(name, state=S, config=config)
    wf.add(Step("notify", StepKind.WEBHOOK, policy=policy or StepPolicy(), options=opts))
    return wf


def origin(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def failures_and_done(engine: Engine, run_id: str) -> tuple[list[Any], list[Any]]:
    events = await engine.store.read_events(run_id)
    failed = [e for e in events if e.type == "step_failed"]
    return failed, [e for e in events if e.type == "step_completed"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_posts_payload_keys_with_headers_and_stores_the_json_answer(engine: Engine) -> None:
    async with Stub(Reply(201, '{"shipment": "S-1", "eta": 3}')) as stub:
        keys = ["order_id", "items"]
        wf = hook(
            "ship",
            endpoint=f"{stub.url}/ship",
            payload=keys,
            output="reply",
            headers={"X-Team": "ops"},
        )
        result = await engine.run(wf, {"order_id": "A7", "items": ["x", "y"], "reply": None})
    assert result.ok, result.error
    assert result.state["reply"] == {"shipment": "S-1", "eta": 3}
    [req] = stub.requests
    assert (req.method, req.path) == ("POST", "/ship")
    assert json.loads(req.body) == {"order_id": "A7", "items": ["x", "y"]}
    h = req.headers
    assert h["content-type"] == "application/json" and h["x-team"] == "ops"
    assert h["user-agent"].startswith("cadenza/")
    assert h["idempotency-key"] == f"{result.run_id}:notify"
    assert (h["x-cadenza-run"], h["x-cadenza-step"]) == (result.run_id, "notify")
    assert "x-cadenza-signature" not in h
    _, [done] = await failures_and_done(engine, result.run_id)
    assert done.data["status"] == 201 and done.data["update"] == {"reply": result.state["reply"]}


async def test_whole_state_body_text_answer_and_no_output(engine: Engine) -> None:
    async with Stub(Reply(200, "accepted, thanks")) as stub:
        put = hook("t", endpoint=stub.url, method="put", output="reply")
        text = await engine.run(put, {"order_id": "B2", "items": []})
        quiet = await engine.run(hook("q", endpoint=stub.url), {"order_id": "B3"})
    assert text.ok and text.state["reply"] == "accepted, thanks"
    assert stub.requests[0].method == "PUT"
    assert json.loads(stub.requests[0].body) == {"order_id": "B2", "items": []}
    assert quiet.ok and quiet.state == {"order_id": "B3"}
    _, [done] = await failures_and_done(engine, quiet.run_id)
    assert "update" not in done.data and done.data["status"] == 200


async def test_workflow_configuration_points_the_step_elsewhere(engine: Engine) -> None:
    async with Stub(Reply(204)) as stub:
        config = {
            "webhook_endpoints": {"notify": f"{stub.url}/staging"},
            "webhook_allow": [stub.url],
        }
        wf = hook("moved", config=config, endpoint=f"http://127.0.0.1:{closed_port()}/prod")
        result = await engine.run(wf, {"order_id": "C"})
    assert result.ok, result.error
    assert [r.path for r in stub.requests] == ["/staging"]


async def test_legacy_signature_verifies_and_the_secret_is_never_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE_SECRET", "s3cr3t-key")
    async with Stub() as stub:
        config = {"webhook_signing": "legacy", "webhook_allow": [stub.url]}
        wf = hook("signed", config=config, endpoint=stub.url, secret_env="WAREHOUSE_SECRET")
        result = await engine.run(wf, {"order_id": "D"})
    assert result.ok, result.error
    [req] = stub.requests
    ts, sig = req.headers["x-cadenza-timestamp"], req.headers["x-cadenza-signature"]
    assert sig.startswith("sha256=") and abs(int(ts) - time.time()) < 5
    assert verify_signature("s3cr3t-key", ts, req.body, sig)
    assert not verify_signature("s3cr3t-key", ts, req.body.replace(b"D", b"E"), sig)
    assert not verify_signature("other-key", ts, req.body, sig)
    assert not verify_signature("s3cr3t-key", ts, req.body, sig, now=int(ts) + 301)
    assert verify_signature(b"s3cr3t-key", int(ts), req.body.decode(), sig, now=int(ts) + 299)
    assert not verify_signature("s3cr3t-key", "soon", req.body, sig)
    assert not verify_signature("s3cr3t-key", ts, req.body, "md5=" + sig[7:])
    assert not any(h.startswith("webhook-") for h in req.headers)
    events = await engine.store.read_events(result.run_id)
    assert "s3cr3t-key" not in json.dumps([e.to_row() for e in events], default=str)


async def test_503_then_200_is_retried_with_the_same_idempotency_key(engine: Engine) -> None:
    async with Stub(Reply(503, "busy"), Reply(200, '{"ok": true}')) as stub:
        wf = hook("flaky", StepPolicy(retry=RETRY3), endpoint=stub.url, output="reply")
        result = await engine.run(wf, {"order_id": "E"})
    assert result.ok and result.state["reply"] == {"ok": True}
    keys = {r.headers["idempotency-key"] for r in stub.requests}
    assert len(stub.requests) == 2 and keys == {f"{result.run_id}:notify"}
    events = await engine.store.read_events(result.run_id)
    steps = [(e.type, e.attempt) for e in events if e.type.startswith("step_")]
    failed, completed = "step_failed", "step_completed"
    assert steps == [(failed, 1), (completed, 2)]
    [failed], [done] = await failures_and_done(engine, result.run_id)
    assert failed.data["status"] == 503 and failed.data["retry"] is True
    assert failed.data["error"] == f"POST {stub.url} answered 503 Service Unavailable: busy"
    assert failed.data["error_type"] == "WebhookUnavailable" and done.data["status"] == 200


async def test_retry_after_is_honoured(engine: Engine) -> None:
    async with Stub(Reply(429, headers={"Retry-After": "0.3"}), Reply(200)) as stub:
        result = await engine.run(hook("slowdown", StepPolicy(retry=RETRY3), endpoint=stub.url), {})
    assert result.ok, result.error
    first, second = stub.requests
    assert second.at - first.at >= 0.29
    [failed], _ = await failures_and_done(engine, result.run_id)
    assert failed.data["status"] == 429 and failed.data["retry_at"] - failed.ts >= 0.29


async def test_404_is_not_retried_and_says_what_was_refused(engine: Engine) -> None:
    async with Stub(Reply(404, "no such order\n" + "x" * 500)) as stub:
        result = await engine.run(hook("missing", StepPolicy(retry=RETRY3), endpoint=stub.url), {})
    assert not result.ok and len(stub.requests) == 1
    message = f"POST {stub.url} answered 404 Not Found: no such order " + "x" * 186
    assert result.error == f"step 'notify' failed: {message}"
    [failed], _ = await failures_and_done(engine, result.run_id)
    assert failed.data["retry"] is False and failed.data["status"] == 404
    assert failed.data["error_type"] == "WebhookRejected"


async def test_a_slow_receiver_times_out_and_is_retried(engine: Engine) -> None:
    # The first reply comes long after the step's timeout, the second at once (well within
    # it even on a loaded machine): one timed-out attempt, then success.
    async with Stub(Reply(200, delay=5.0), Reply(200, '"fast"')) as stub:
        policy = StepPolicy(timeout=1.0, retry=RETRY3)
        result = await engine.run(hook("slow", policy, endpoint=stub.url, output="reply"), {})
    assert result.ok and result.state["reply"] == "fast"
    [failed], _ = await failures_and_done(engine, result.run_id)
    assert failed.data["error_type"] == "Timeout" and failed.data["retry"] is True
    assert failed.data["error"] == f"POST {stub.url} timed out after 1s"
    assert "status" not in failed.data


async def test_refused_connection_is_retried_then_fails_clearly(engine: Engine) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    retry = RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)
    result = await engine.run(hook("down", StepPolicy(retry=retry), endpoint=url), {})
    assert not result.ok
    failed, _ = await failures_and_done(engine, result.run_id)
    assert [(f.attempt, f.data["retry"]) for f in failed] == [(1, True), (2, False)]
    assert {f.data["error_type"] for f in failed} == {"ConnectionError"}
    assert (result.error or "").startswith(f"step 'notify' failed: POST {url} could not connect")


async def test_missing_payload_key_and_secret_fail_before_any_call(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    async with Stub() as stub:
        policy = StepPolicy(retry=RETRY3)
        keyed = hook("k", policy, endpoint=stub.url, payload=["items"])
        no_key = await engine.run(keyed, {"order_id": "F", "reply": 1})
        signed = hook("s", policy, endpoint=stub.url, secret_env="NO_SUCH_SECRET")
        no_secret = await engine.run(signed, {})
    assert stub.requests == []
    assert no_key.error == (
        "step 'notify' failed: payload key 'items' not in the state (keys: order_id, reply)"
    )
    assert "environment variable 'NO_SUCH_SECRET'" in (no_secret.error or "")
    for run in (no_key, no_secret):
        failed, _ = await failures_and_done(engine, run.run_id)
        assert [f.data["error_type"] for f in failed] == ["WebhookMisconfigured"]


async def test_a_breaker_stops_calls_to_a_failing_receiver() -> None:
    config = BreakerConfig(window=2, minimum_calls=1, failure_rate=1.0, cool_down=60, probes=1)
    async with Stub(Reply(500)) as stub, Engine(MemoryStore(), breakers={"wh": config}) as engine:
        wf = hook("guarded", StepPolicy(breaker="wh"), endpoint=stub.url)
        first = await engine.run(wf, {})
        second = await engine.run(wf, {})
    assert len(stub.requests) == 1, "the open breaker let a call through"
    assert "answered 500" in (first.error or "")
    assert "circuit 'wh' is open" in (second.error or "")
