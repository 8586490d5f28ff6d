"""The WEBHOOK step under the egress policy: endpoints that are not allow-listed and resolve
to loopback, private or metadata addresses fail the step at once (``EndpointRefused``, never
retried) and nothing reaches the listeners behind them; redirects are not followed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.http_stub import Reply, Stub
from tests.net.doubles import Sentinel
from tests.steps.test_webhook import RETRY3, failures_and_done, hook

from cadenza import Engine
from cadenza.graph.ir import StepPolicy
from cadenza.steps.webhook import aclose_clients


@pytest.fixture(autouse=True)
async def _webhooks() -> AsyncIterator[None]:
    yield
    await aclose_clients()


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    s = Sentinel()
    await s.start()
    yield s
    await s.stop()


@pytest.mark.parametrize(
    ("url", "error_type", "why"),
    [
        ("http://127.0.0.1:{p4}/hook", "EndpointRefused", "plain http is refused"),
        ("https://127.0.0.1:{p4}/hook", "EndpointRefused", "a loopback address"),
        ("https://localhost:{p4}/hook", "EndpointRefused", "localhost resolves to"),
        ("https://[::1]:{p6}/hook", "EndpointRefused", "a loopback address"),
        ("https://[::ffff:127.0.0.1]:{p4}/", "EndpointRefused", "IPv4-mapped form"),
        ("https://2130706433:{p4}/", "EndpointRefused", "non-canonical form"),
        ("https://user@127.0.0.1:{p4}/", "EndpointRefused", "credentials"),
        ("https://169.254.169.254/latest/meta-data/", "EndpointRefused", "link-local"),
        ("https://[::ffff:169.254.169.254]/", "EndpointRefused", "IPv4-mapped form"),
        ("https://10.1.2.3/", "EndpointRefused", "RFC 1918"),
        ("https://100.64.0.1/", "EndpointRefused", "carrier-grade NAT"),
        ("https://[fc00::1]/", "EndpointRefused", "unique local"),
        ("file:///etc/passwd", "WebhookMisconfigured", "is not an http(s) URL"),
    ],
)
async def test_refused_endpoints_fail_at_once_and_reach_nothing(
    engine: Engine, sentinel: Sentinel, url: str, error_type: str, why: str
) -> None:
    endpoint = url.format(p4=sentinel.p4, p6=sentinel.p6)
    wf = hook("ssrf", StepPolicy(retry=RETRY3), config={"webhook_allow": []}, endpoint=endpoint)
    result = await engine.run(wf, {"order_id": "X"})
    assert not result.ok and why in (result.error or "")
    failed, _ = await failures_and_done(engine, result.run_id)
    assert [(f.data["error_type"], f.data["retry"]) for f in failed] == [(error_type, False)]
    assert sentinel.connections == 0


async def test_allow_listing_another_port_does_not_cover_this_one(
    engine: Engine, sentinel: Sentinel
) -> None:
    async with Stub() as stub:
        config = {"webhook_allow": [stub.url]}
        wf = hook("other-port", config=config, endpoint=f"http://127.0.0.1:{sentinel.p4}/")
        result = await engine.run(wf, {})
    assert "plain http is refused" in (result.error or "")
    assert stub.requests == [] and sentinel.connections == 0


async def test_the_per_environment_endpoint_is_guarded_too(engine: Engine) -> None:
    async with Stub() as stub:
        config = {
            "webhook_endpoints": {"notify": "https://169.254.169.254/latest/"},
            "webhook_allow": [stub.url],
        }
        result = await engine.run(hook("moved", config=config, endpoint=stub.url), {})
    assert "link-local" in (result.error or "") and stub.requests == []


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:{p4}/admin", "/elsewhere"],
)
async def test_a_redirect_is_not_followed(
    engine: Engine, sentinel: Sentinel, location: str
) -> None:
    """A 302 to a private address (or anywhere) fails the step: following it would send the
    signed payload where the receiver points, and the spec says to fix the URL instead."""
    target = location.format(p4=sentinel.p4)
    async with Stub(Reply(302, headers={"Location": target})) as stub:
        wf = hook("redirected", StepPolicy(retry=RETRY3), endpoint=f"{stub.url}/hook")
        result = await engine.run(wf, {})
    assert len(stub.requests) == 1 and sentinel.connections == 0
    assert result.error == (
        f"step 'notify' failed: POST {stub.url}/hook answered 302 Found: redirect to "
        f"{target!r} not followed; set the endpoint to the final URL"
    )
    failed, _ = await failures_and_done(engine, result.run_id)
    assert [(f.data["error_type"], f.data["status"]) for f in failed] == [("WebhookRejected", 302)]
