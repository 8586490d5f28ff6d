"""The issuer's keys over the network: bad answers are clear errors, limits hold, and a real
loopback issuer, a silent one and a closed port behave as the verifier promises."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytest.importorskip("jwt", reason="PyJWT comes with the server extra: pip install '.[server]'")
pytest.importorskip("cryptography", reason="cryptography comes with the server extra")

from cadenza.server.auth import Identity, IssuerUnavailable
from cadenza.server.auth.tokens import OIDCConfig, OIDCVerifier
from tests.server.issuer import (
    AUDIENCE,
    ISSUER,
    NOW,
    ROLE_MAP,
    Clock,
    Issuer,
    Keys,
    claims,
    issuer_keys,
    sign,
    standard_jwks,
)

ALICE_OPERATOR = Identity("oidc:alice", frozenset({"operator"}), "oidc", NOW + 300)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return issuer_keys()


async def test_discovery_naming_another_issuer_is_refused(keys: Keys) -> None:
    issuer = Issuer(standard_jwks(keys), names="https://issuer.example.evil")
    verifier = OIDCVerifier(OIDCConfig(ISSUER, AUDIENCE), transport=httpx.MockTransport(issuer))
    with pytest.raises(IssuerUnavailable) as caught:
        await verifier.authenticate(sign(keys.rsa, "RS256", "rsa-1"))
    error = caught.value
    assert isinstance(error, IssuerUnavailable)
    assert "names issuer 'https://issuer.example.evil', not 'https://issuer.example'" in str(error)
    assert issuer.fetches == 0


def served(
    status: int = 200, *, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> Callable[..., Any]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        # A stream, not content: httpx would decode content (gzip included) on construction.
        sized = {"content-length": str(len(body)), **(headers or {})}
        return httpx.Response(status, stream=httpx.ByteStream(body), headers=sized)

    return handler


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (
            served(302, headers={"location": "http://issuer.example/jwks"}),
            "HTTP 302 (redirects are not followed",
        ),
        (served(500), "answered HTTP 500"),
        (served(body=b"x" * 300_000), "answered 300000 bytes (at most 262144)"),
        (served(body=b"{}", headers={"content-encoding": "gzip"}), "gzip-encoded"),
        (served(body=b"<html>"), "did not answer JSON"),
        (served(body=b'{"keys": {}}'), "keys list"),
        (
            served(body=json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode()),
            "no public signing keys",
        ),
        (
            served(
                body=json.dumps(
                    {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"}]}
                ).encode()
            ),
            "no public signing keys",
        ),
        (
            lambda r: httpx.Response(
                200, json={"issuer": ISSUER, "jwks_uri": "http://issuer.example/k"}
            ),
            "jwks_uri 'http://issuer.example/k' must be an https URL",
        ),
        (lambda r: httpx.Response(200, json={"issuer": ISSUER}), "no jwks_uri"),
    ],
    ids=[
        "redirect",
        "500",
        "too-large",
        "gzip",
        "not-json",
        "keys-not-list",
        "only-secret",
        "only-enc",
        "http-jwks-uri",
        "no-jwks-uri",
    ],
)
async def test_bad_issuer_answers_are_clear_errors(
    keys: Keys, handler: Callable[..., Any], reason: str
) -> None:
    transport = httpx.MockTransport(handler)
    verifier = OIDCVerifier(OIDCConfig(ISSUER, AUDIENCE), clock=Clock(), transport=transport)
    with pytest.raises(IssuerUnavailable, match="next attempt in 30 s") as caught:
        await verifier.authenticate(sign(keys.rsa, "RS256", "rsa-1"))
    assert reason in str(caught.value)


class _IssuerHandler(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.documents.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path != "/unsized":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_issuer(keys: Keys) -> Iterator[str]:
    """A real issuer on 127.0.0.1 over plain http, served from a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IssuerHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _IssuerHandler.documents = {
        "/.well-known/openid-configuration": json.dumps(
            {"issuer": url, "jwks_uri": f"{url}/jwks"}
        ).encode(),
        "/jwks": json.dumps({"keys": standard_jwks(keys)}).encode(),
        "/unsized": b" " * 300_000,
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


async def test_real_loopback_issuer(keys: Keys, loopback_issuer: str) -> None:
    config = OIDCConfig(loopback_issuer, AUDIENCE, role_map=ROLE_MAP, allow_http_loopback=True)
    token = sign(keys.ec, "ES256", "ec-1", claims(iss=loopback_issuer))
    assert await OIDCVerifier(config, clock=Clock()).authenticate(token) == ALICE_OPERATOR
    assert OIDCVerifier(config, clock=Clock()).authenticate_sync(token) == ALICE_OPERATOR


def test_body_without_length_is_cut_off_at_the_limit(keys: Keys, loopback_issuer: str) -> None:
    _IssuerHandler.documents["/.well-known/openid-configuration"] = json.dumps(
        {"issuer": loopback_issuer, "jwks_uri": f"{loopback_issuer}/unsized"}
    ).encode()
    config = OIDCConfig(loopback_issuer, AUDIENCE, allow_http_loopback=True)
    token = sign(keys.rsa, "RS256", "rsa-1", claims(iss=loopback_issuer))
    with pytest.raises(IssuerUnavailable, match="answered over 262144 bytes"):
        OIDCVerifier(config, clock=Clock()).authenticate_sync(token)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_silent_issuer_times_out(keys: Keys, silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    config = OIDCConfig(url, AUDIENCE, allow_http_loopback=True, timeout=0.2)
    token = sign(keys.rsa, "RS256", "rsa-1", claims(iss=url))
    with pytest.raises(IssuerUnavailable, match=r"no answer within 0\.2 s"):
        await OIDCVerifier(config, clock=Clock()).authenticate(token)
    with pytest.raises(IssuerUnavailable, match=r"no answer within 0\.2 s"):
        OIDCVerifier(config, clock=Clock()).authenticate_sync(token)


def test_closed_port_is_a_clear_error(keys: Keys) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    config = OIDCConfig(url, AUDIENCE, allow_http_loopback=True, timeout=2)
    with pytest.raises(IssuerUnavailable, match=rf"^{url}/\.well-known/openid-configuration: "):
        OIDCVerifier(config, clock=Clock()).authenticate_sync(
            sign(keys.rsa, "RS256", "rsa-1", claims(iss=url))
        )
