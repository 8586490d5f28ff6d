"""Inbound callbacks: a WEBHOOK step with ``callback=`` calls its receiver, then waits; the
receiver's signed callback to ``/v1/runs/{run}/callbacks/{step}`` resumes it. Signatures are
Standard Webhooks (checked against the step's secrets, rotation included, within 5 minutes);
a repeated ``webhook-id`` is delivered once, even when the repeats arrive together or after
the process that took the first one died."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cadenza.net.webhook_signing import sign
from cadenza.server.service import Server
from cadenza.steps.webhook import aclose_clients, callback_signal
from tests.http_stub import Reply, Stub
from tests.server import flows
from tests.server.fixtures import Api, catalog, config, serving, until
from tests.server.issuer import NOW, Clock

NEW = "whsec_" + base64.b64encode(b"the new secret, 32 bytes long!!!").decode()
OLD = "whsec_" + base64.b64encode(b"the old secret, 32 bytes long!!!").decode()
STRANGER = "whsec_" + base64.b64encode(b"somebody else's 32 byte secret!!").decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Stub]:
    async with Stub(Reply(200, '{"accepted": true}', {"Content-Type": "application/json"})) as s:
        yield s
    await aclose_clients()


@pytest.fixture
async def hooked(
    tmp_path: Path, receiver: Stub, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    monkeypatch.setenv("CADENZA_TEST_WEBHOOK_SECRET", f"{NEW} {OLD}")
    called = copy.copy(flows.called).configure(
        webhook_endpoints={"notify": f"{receiver.url}/hook"}, webhook_allow=[receiver.url]
    )
    server = Server(tmp_path / "c.db", config=config(), catalog=catalog(called), clock=Clock())
    async with serving(server) as api:
        yield api


async def _waiting(api: Api, headers: dict[str, str]) -> str:
    run_id = await api.start(headers, "called", input={"amount": 7})

    async def called_and_waiting() -> bool:
        events = await api.events(headers, run_id)
        return any(e["path"] == "notify/call" and e["type"] == "step_completed" for e in events)

    await until(called_and_waiting, "the webhook's call")
    return run_id


def signed(
    body: bytes, *, secret: str | list[str] = OLD, msg_id: str = "msg_1", at: float = NOW
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, made at ``at`` (the server's clock says NOW)."""
    return sign(secret, msg_id, at, body)


async def post(api: Api, run_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return await api.client.post(
        f"/v1/runs/{run_id}/callbacks/notify",
        content=body,
        headers={**headers, "content-type": "application/json"},
    )


async def test_a_signed_callback_resumes_the_step_once(hooked: Api, receiver: Stub) -> None:
    ops = await hooked.key("ops")
    run_id = await _waiting(hooked, ops)
    assert len(receiver.requests) == 1
    assert (await hooked.run(ops, run_id))["status"] == "RUNNING"
    body = json.dumps({"shipped": True, "tracking": "Z-1"}).encode()
    answer = await post(hooked, run_id, body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"webhook_id": "msg_1", "duplicate": False}
    run = await hooked.settled(ops, run_id)
    assert run["status"] == "COMPLETED"
    assert run["state"]["callback"] == {"shipped": True, "tracking": "Z-1"}
    assert run["state"]["reply"] == {"accepted": True}
    again = await post(hooked, run_id, body, signed(body))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    events = await hooked.events(ops, run_id)
    signals = [e for e in events if e["type"] == "signal"]
    assert [s["data"]["actor"] for s in signals] == ["webhook:msg_1"]
    assert signals[0]["data"]["name"] == callback_signal("notify")
    assert len(receiver.requests) == 1  # resuming did not call again


def _cases() -> dict[str, tuple[Any, int, str]]:
    now = NOW
    body = b'{"ok": true}'

    def without(name: str) -> Any:
        return lambda: {k: v for k, v in signed(body).items() if k != name}

    return {
        "no webhook-id": (without("webhook-id"), 401, "without webhook-id"),
        "no webhook-timestamp": (without("webhook-timestamp"), 401, "without webhook-timestamp"),
        "no webhook-signature": (without("webhook-signature"), 401, "without webhook-signature"),
        "tampered body": (lambda: signed(b'{"ok": false}'), 401, "no matching signature"),
        "unknown secret": (lambda: signed(body, secret=STRANGER), 401, "no matching signature"),
        "six minutes old": (lambda: signed(body, at=now - 360), 401, "too old"),
        "six minutes ahead": (lambda: signed(body, at=now + 360), 401, "too new"),
        "timestamp in ms": (
            lambda: {**signed(body), "webhook-timestamp": str(int(now * 1000))},
            401,
            "too new",
        ),
        "timestamp not a number": (
            lambda: {**signed(body), "webhook-timestamp": "yesterday"},
            401,
            "not unix seconds",
        ),
        "signature of another id": (
            lambda: {**signed(body, msg_id="msg_2"), "webhook-id": "msg_1"},
            401,
            "no matching signature",
        ),
        "garbled signature": (
            lambda: {**signed(body), "webhook-signature": "v1,!!!"},
            401,
            "no matching signature",
        ),
        "another scheme only": (
            lambda: {**signed(body), "webhook-signature": "v1a,abc"},
            401,
            "0 readable v1 signatures",
        ),
        "four minutes old": (lambda: signed(body, at=now - 240), 200, ""),
        "four minutes ahead": (lambda: signed(body, at=now + 240), 200, ""),
        "signed with the new secret": (lambda: signed(body, secret=NEW), 200, ""),
        "signed with the old secret": (lambda: signed(body, secret=OLD), 200, ""),
        "several signatures, one good": (
            lambda: {
                **signed(body),
                "webhook-signature": "v1,AAAA "
                + signed(body, secret=STRANGER)["webhook-signature"]
                + " "
                + signed(body)["webhook-signature"],
            },
            200,
            "",
        ),
    }


CASES = _cases()


@pytest.mark.parametrize(("make", "status", "reason"), CASES.values(), ids=CASES.keys())
async def test_signature_cases(hooked: Api, make: Any, status: int, reason: str) -> None:
    ops = await hooked.key("ops")
    run_id = await _waiting(hooked, ops)
    body = b'{"ok": true}'
    answer = await post(hooked, run_id, body, make())
    assert answer.status_code == status, answer.text
    if status == 401:
        assert reason in answer.json()["detail"]
        assert (await hooked.run(ops, run_id))["status"] == "RUNNING"
        await hooked.server.audit.flush()
        log = await hooked.server.tables.audit_log()
        assert [e.kind for e in log] == ["callback_refused"] and reason in log[0].reason
    else:
        assert (await hooked.settled(ops, run_id))["state"]["callback"] == {"ok": True}


async def test_unknown_runs_and_steps_that_take_no_callbacks(hooked: Api) -> None:
    ops = await hooked.key("ops")
    body = b"{}"
    unknown = await post(hooked, "0" * 32, body, signed(body))
    assert unknown.status_code == 404
    other = await hooked.start(ops, "orders")
    answer = await hooked.client.post(
        f"/v1/runs/{other}/callbacks/check", content=body, headers=signed(body)
    )
    assert answer.status_code == 404 and "takes no callbacks" in answer.json()["detail"]


async def test_concurrent_repeats_deliver_once(hooked: Api) -> None:
    ops = await hooked.key("ops")
    run_id = await _waiting(hooked, ops)
    body = b'{"n": 1}'
    answers = await asyncio.gather(*(post(hooked, run_id, body, signed(body)) for _ in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(409) + statuses.count(200) == 10, statuses
    assert sum(1 for a in answers if a.status_code == 200 and not a.json()["duplicate"]) == 1
    await hooked.settled(ops, run_id)
    events = await hooked.events(ops, run_id)
    assert len([e for e in events if e["type"] == "signal"]) == 1


async def test_an_abandoned_delivery_is_finished_exactly_once(hooked: Api) -> None:
    ops = await hooked.key("ops")
    tables = hooked.server.tables
    # A process recorded msg_9 an hour ago and died before delivering it: it is delivered now.
    run_id = await _waiting(hooked, ops)
    await tables.claim_webhook(run_id, "notify", "msg_9", time.time() - 3600)  # type: ignore[arg-type]
    body = b'{"late": true}'
    answer = await post(hooked, run_id, body, signed(body, msg_id="msg_9"))
    assert answer.status_code == 200 and answer.json()["duplicate"] is False
    await hooked.settled(ops, run_id)
    # Another died after delivering msg_8 but before noting it: the log says it was.
    second = await _waiting(hooked, ops)
    body = b'{"first": true}'
    assert (await post(hooked, second, body, signed(body, msg_id="msg_8"))).status_code == 200
    await hooked.settled(ops, second)
    await tables.forget_webhook(second, "notify", "msg_8")  # type: ignore[arg-type]
    await tables.claim_webhook(second, "notify", "msg_8", time.time() - 3600)  # type: ignore[arg-type]
    answer = await post(hooked, second, body, signed(body, msg_id="msg_8"))
    assert answer.status_code == 200 and answer.json()["duplicate"] is True
    events = await hooked.events(ops, second)
    assert len([e for e in events if e["type"] == "signal"]) == 1


async def test_a_callback_to_a_finished_run_is_refused_and_not_kept(hooked: Api) -> None:
    ops = await hooked.key("ops")
    run_id = await _waiting(hooked, ops)
    await hooked.client.post(f"/v1/runs/{run_id}/cancel", headers=ops)
    body = b"{}"
    answer = await post(hooked, run_id, body, signed(body))
    assert answer.status_code == 409 and "CANCELLED" in answer.json()["detail"]
    claim = await hooked.server.tables.claim_webhook(run_id, "notify", "msg_1", time.time())  # type: ignore[arg-type]
    assert claim.mine  # the refused one was forgotten
