"""Authentication over the API: a local test issuer (keys made here, discovery and JWKS served
on loopback over real HTTP) and API keys. Every forged, stale or misdirected credential is a
401 with its reason, recorded in the server's audit log; valid ones get 200; and every route
but the health checks and the documentation refuses a request without credentials."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cadenza.server.auth.tokens import OIDCConfig
from cadenza.server.service import Server
from tests.server.fixtures import Api, catalog, config, serving
from tests.server.issuer import (
    AUDIENCE,
    NOW,
    ROLE_MAP,
    Clock,
    Keys,
    claims,
    forge,
    issuer_keys,
    public_jwk,
    sign,
    standard_jwks,
)


class _Issuer(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.documents.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def keys() -> Keys:
    return issuer_keys()


@pytest.fixture
def issuer(keys: Keys) -> Iterator[str]:
    """A real OIDC issuer on 127.0.0.1 (plain http, allowed for loopback in the config)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _Issuer.documents = {
        "/.well-known/openid-configuration": json.dumps(
            {"issuer": url, "jwks_uri": f"{url}/jwks"}
        ).encode(),
        "/jwks": json.dumps({"keys": standard_jwks(keys)}).encode(),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def _oidc(url: str) -> OIDCConfig:
    return OIDCConfig(url, AUDIENCE, role_map=ROLE_MAP, allow_http_loopback=True)


@pytest.fixture
async def oidc_api(tmp_path: Any, issuer: str) -> Any:
    settings = config(oidc=(_oidc(issuer),), identities={"oidc:alice": "ops", "key:ops": "ops"})
    server = Server(tmp_path / "a.db", config=settings, catalog=catalog(), clock=Clock())
    async with serving(server) as api:
        api.issuer = issuer  # type: ignore[attr-defined]
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rs(k: Keys, url: str, **changes: Any) -> str:
    return sign(k.rsa, "RS256", "rsa-1", claims(**{"iss": url, **changes}))


def _headed(k: Keys, url: str, **headers: Any) -> str:
    return sign(k.rsa, "RS256", "rsa-1", claims(iss=url), **headers)


def _confused(k: Keys, url: str) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = k.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return forge({"alg": "HS256", "kid": "rsa-1"}, claims(iss=url), pem)


# case: (token from the keys and the issuer's URL, what the refusal says)
TOKENS: dict[str, tuple[Callable[[Keys, str], str], str]] = {
    "alg-none": (lambda k, u: forge({"alg": "none", "kid": "rsa-1"}, claims(iss=u)), "alg none"),
    "hs256-signed-with-the-rsa-public-key": (_confused, "'HS256' not allowed"),
    "expired": (lambda k, u: _rs(k, u, exp=NOW - 600), "expired"),
    "future-nbf": (lambda k, u: _rs(k, u, nbf=NOW + 600), "not valid yet"),
    "wrong-iss": (lambda k, u: _rs(k, u, iss="https://other.example"), "not from issuer"),
    "iss-suffix-trick": (lambda k, u: _rs(k, u, iss=u + ".evil.example"), "not from issuer"),
    "wrong-aud": (lambda k, u: _rs(k, u, aud="another-api"), "not for audience"),
    "unknown-crit": (lambda k, u: _headed(k, u, crit=["exp"]), "critical header"),
    "jku-header": (lambda k, u: _headed(k, u, jku=f"{u}/jwks"), "'jku' header refused"),
    "jwk-header": (
        lambda k, u: sign(
            k.stranger, "RS256", "x", claims(iss=u), jwk=public_jwk(k.stranger, "x", "RS256")
        ),
        "'jwk' header refused",
    ),
    "unknown-kid": (
        lambda k, u: sign(k.stranger, "RS256", "rotated", claims(iss=u)),
        "unknown signing key",
    ),
    "signed-by-a-stranger": (
        lambda k, u: sign(k.stranger, "RS256", "rsa-1", claims(iss=u)),
        "signature does not verify",
    ),
}


@pytest.mark.parametrize(("make", "reason"), TOKENS.values(), ids=TOKENS.keys())
async def test_bad_tokens_are_401_and_recorded(
    oidc_api: Api, keys: Keys, make: Callable[[Keys, str], str], reason: str
) -> None:
    token = make(keys, oidc_api.issuer)  # type: ignore[attr-defined]
    answer = await oidc_api.client.get("/v1/workflows", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert reason in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert not any(len(part) > 20 and part in answer.text for part in token.split("."))
    log = await oidc_api.server.tables.audit_log()
    assert [(e.kind, e.path) for e in log] == [("authentication_failed", "/v1/workflows")]
    assert reason in log[0].reason


async def test_a_valid_token_is_the_mapped_user(oidc_api: Api, keys: Keys) -> None:
    url = oidc_api.issuer  # type: ignore[attr-defined]
    for key, alg, kid in (("rsa", "RS256", "rsa-1"), ("ec", "ES256", "ec-1")):
        token = sign(getattr(keys, key), alg, kid, claims(iss=url))
        answer = await oidc_api.client.get("/v1/workflows", headers=bearer(token))
        assert answer.status_code == 200, answer.text
    # alice's groups map to operator; her identity is the configured user "ops"
    run = await oidc_api.client.post(
        "/v1/workflows/waiter/runs", headers=bearer(_rs(keys, url)), json={}
    )
    assert run.status_code == 201, run.text
    signal = await oidc_api.client.post(
        f"/v1/runs/{run.json()['run_id']}/signals",
        json={"name": "go"},
        headers=bearer(_rs(keys, url)),
    )
    assert signal.status_code == 200
    events = await oidc_api.events(bearer(_rs(keys, url)), run.json()["run_id"])
    assert [e["data"]["actor"] for e in events if e["type"] == "signal"] == ["ops"]
    # a subject without a mapping acts as its proven identity, and has only its token's roles
    bob = sign(keys.rsa, "RS256", "rsa-1", claims(iss=url, sub="bob", groups=["auditors"]))
    assert (await oidc_api.client.get("/v1/workflows", headers=bearer(bob))).status_code == 200
    refused = await oidc_api.client.post("/v1/workflows/orders/runs", headers=bearer(bob), json={})
    assert refused.status_code == 403
    assert "oidc:bob may not start orders" in refused.json()["detail"]


async def test_an_unreachable_issuer_refuses_tokens_without_blaming_them(
    tmp_path: Any, keys: Keys
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    settings = config(oidc=(_oidc(url),))
    server = Server(tmp_path / "u.db", config=settings, catalog=catalog(), clock=Clock())
    async with serving(server) as api:
        answer = await api.client.get("/v1/workflows", headers=bearer(_rs(keys, url)))
        # 503 with Retry-After, not 401: the token may be fine, and a client told 401 would
        # throw it away (see cadenza.server.auth.IssuerUnavailable)
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "30"
        assert "openid-configuration: " in answer.json()["detail"]
        assert "next attempt in" in answer.json()["detail"]
        log = await api.server.tables.audit_log()
        assert [e.kind for e in log] == ["issuer_unavailable"]


async def test_api_keys(api: Api) -> None:
    ops = await api.key("ops")
    assert (await api.client.get("/v1/workflows", headers=ops)).status_code == 200
    key = api.keys["ops"]
    cases = {
        "bad checksum": (key[:-1] + ("A" if key[-1] != "A" else "B"), "checksum mismatch"),
        "truncated": (key[:-3], "expected 40 characters"),
        "not stored": (_well_formed_unknown(), "not recognised"),
    }
    for name, (credential, reason) in cases.items():
        answer = await api.client.get("/v1/workflows", headers=bearer(credential))
        assert answer.status_code == 401, name
        assert reason in answer.json()["detail"], name
    await api.key("old", ["operator"], lifetime=1)
    old = api.keys["old"]
    api.server.authenticator.clock = lambda: time.time() + 3600
    try:
        answer = await api.client.get("/v1/workflows", headers=bearer(old))
        assert answer.status_code == 401 and "expired" in answer.json()["detail"]
    finally:
        api.server.authenticator.clock = time.time
    revoked = await api.server.tables.revoke_keys("ops", time.time())
    assert [r.name for r in revoked] == ["ops"]
    answer = await api.client.get("/v1/workflows", headers=ops)
    assert answer.status_code == 401 and "was revoked" in answer.json()["detail"]
    for scheme in ("Basic b3BzOnB3", "Bearer", "Token " + key):
        answer = await api.client.get("/v1/workflows", headers={"Authorization": scheme})
        assert answer.status_code == 401
    log = await api.server.tables.audit_log(limit=1000)
    assert len(log) == 8 and all(e.kind == "authentication_failed" for e in log)
    assert not any(key[4:20] in e.reason for e in log)


async def test_last_use_of_a_key_is_recorded(api: Api) -> None:
    ops = await api.key("ops")
    before = await api.server.tables.key_by_hash(_hash(api.keys["ops"]))
    assert before is not None and before.last_used is None
    await api.client.get("/v1/workflows", headers=ops)
    after = await api.server.tables.key_by_hash(_hash(api.keys["ops"]))
    assert after is not None and after.last_used is not None


def _hash(key: str) -> str:
    from cadenza.server.auth.keys import key_hash

    return key_hash(key)


def _well_formed_unknown() -> str:
    from cadenza.server.auth import keys

    key, _ = keys.generate("nobody", [], now=time.time())
    return key


PUBLIC = {"/healthz", "/readyz"}


async def _routes(api: Api) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document (so a route left out of it fails too)."""
    document = (await api.client.get("/openapi.json")).json()
    found = []
    for path, operations in document["paths"].items():
        if path in PUBLIC:
            continue
        path = path.replace("{step}", "review")
        for name in ("run_id", "name"):
            path = path.replace("{" + name + "}", "x")
        found += [(method.upper(), path) for method in operations]
    return sorted(found)


async def test_every_route_refuses_a_request_without_credentials(api: Api) -> None:
    ops = await api.key("ops")
    run_id = await api.start(ops, "orders")
    routes = await _routes(api)
    assert len(routes) >= 25
    for method, path in routes:
        path = path.replace("/runs/x", f"/runs/{run_id}").replace("workflows/x", "workflows/orders")
        for headers in ({}, {"Authorization": "Bearer nonsense"}):
            answer = await api.client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, f"{method} {path} {headers}: {answer.text}"
            assert answer.headers["content-type"] == "application/problem+json"
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert (await api.client.get(path)).status_code == 200
