"""The WEBHOOK step signs with Standard Webhooks by default: receivers verify with
``cadenza.net.webhook_signing.verify`` (or any Standard Webhooks library); the idempotency
key is the ``webhook-id``, the same on every attempt; secrets rotate; the legacy headers
remain available alone or alongside."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.http_stub import Reply, Stub
from tests.steps.test_webhook import RETRY3, failures_and_done, hook

from cadenza import Engine, Workflow
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.ir import StepPolicy
from cadenza.net.webhook_signing import WebhookVerificationError, verify
from cadenza.steps.webhook import aclose_clients, verify_signature

NEW = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long!!!").decode()
OLD = "whsec_" + base64.b64encode(b"the old secret, 32 bytes long!!!").decode()


@pytest.fixture(autouse=True)
async def _webhooks() -> AsyncIterator[None]:
    yield
    await aclose_clients()


async def test_standard_headers_verify_and_the_id_is_the_idempotency_key(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", NEW)
    async with Stub(Reply(503), Reply(200)) as stub:
        wf = hook("std", StepPolicy(retry=RETRY3), endpoint=stub.url, secret_env="HOOK_SECRET")
        result = await engine.run(wf, {"order_id": "A"})
    assert result.ok, result.error
    key = f"{result.run_id}:notify"
    for req in stub.requests:
        h = req.headers
        assert verify(NEW, h, req.body) == key == h["idempotency-key"]
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 5
        assert "x-cadenza-signature" not in h and "x-cadenza-timestamp" not in h
    assert len(stub.requests) == 2
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(OLD, stub.requests[0].headers, stub.requests[0].body)


async def test_unsigned_calls_still_carry_id_and_timestamp(engine: Engine) -> None:
    async with Stub() as stub:
        result = await engine.run(hook("plain", endpoint=stub.url), {})
    [req] = stub.requests
    assert result.ok and req.headers["webhook-id"] == f"{result.run_id}:notify"
    assert req.headers["webhook-timestamp"].isdigit() and "webhook-signature" not in req.headers


async def test_rotation_sends_one_signature_per_secret(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRETS", f"{NEW} {OLD}")
    async with Stub() as stub:
        result = await engine.run(hook("rot", endpoint=stub.url, secret_env="HOOK_SECRETS"), {})
    assert result.ok, result.error
    [req] = stub.requests
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    for secrets in (NEW, OLD, [OLD, NEW]):
        assert verify(secrets, req.headers, req.body) == f"{result.run_id}:notify"


async def test_both_schemes_at_once_for_receivers_moving_over(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", NEW)
    async with Stub() as stub:
        config = {"webhook_signing": "both", "webhook_allow": [stub.url]}
        wf = hook("both", config=config, endpoint=stub.url, secret_env="HOOK_SECRET")
        result = await engine.run(wf, {"order_id": "B"})
    assert result.ok, result.error
    [req] = stub.requests
    h = req.headers
    assert verify(NEW, h, req.body) == f"{result.run_id}:notify"
    assert h["x-cadenza-timestamp"] == h["webhook-timestamp"]
    assert verify_signature(NEW, h["x-cadenza-timestamp"], req.body, h["x-cadenza-signature"])


async def test_a_key_with_a_dot_is_escaped_in_the_webhook_id(engine: Engine) -> None:
    async with Stub() as stub:
        result = await engine.run(hook("dot", endpoint=stub.url), {}, run_id="order.7")
    assert result.ok, result.error
    h = stub.requests[0].headers
    assert (h["idempotency-key"], h["webhook-id"]) == ("order.7:notify", "order%2E7:notify")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("s3cr3t-key", "does not hold a Standard Webhooks secret (whsec_ + base64)"),
        ("whsec_" + base64.b64encode(b"too short").decode(), "has 9 bytes, fewer than the 24"),
        (f"{NEW} whsec_!!", "does not hold a Standard Webhooks secret"),
    ],
)
async def test_secrets_unfit_for_standard_webhooks_fail_before_any_call(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, secret: str, problem: str
) -> None:
    monkeypatch.setenv("HOOK_SECRET", secret)
    async with Stub() as stub:
        wf = hook("bad", StepPolicy(retry=RETRY3), endpoint=stub.url, secret_env="HOOK_SECRET")
        result = await engine.run(wf, {})
    assert stub.requests == [] and problem in (result.error or "")
    assert "webhook_signing='legacy'" in (result.error or "")
    assert secret.split()[-1] not in (result.error or "")
    failed, _ = await failures_and_done(engine, result.run_id)
    assert [f.data["error_type"] for f in failed] == ["WebhookMisconfigured"]


def test_signing_scheme_and_allow_list_are_checked_when_the_workflow_is_defined() -> None:
    with pytest.raises(ValueError, match="webhook_signing"):
        WorkflowConfiguration(webhook_signing="hmac")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an origin"):
        WorkflowConfiguration(webhook_allow=("https://hooks.example/ship",))


def _noop(state: dict[str, Any]) -> None:
    return None


def test_new_settings_leave_existing_workflow_versions_alone() -> None:
    """The configuration is hashed into the version a run is pinned to: adding settings must
    not change the version of workflows that leave them at their defaults."""
    dumped: dict[str, Any] = WorkflowConfiguration().model_dump()
    assert "webhook_allow" not in dumped and "webhook_signing" not in dumped

    def version(**config: Any) -> str:
        wf = Workflow("v", config=config)
        wf.task(_noop)
        return wf.compile().version

    assert version() == version(webhook_signing="standard", webhook_allow=())
    assert version() != version(webhook_signing="legacy")
    assert version() != version(webhook_allow=["https://hooks.example"])
