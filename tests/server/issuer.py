"""A test OIDC issuer: keys made here, its JWKS and discovery served through
``httpx.MockTransport``, and tokens signed (or forged) with its keys. Import after
``pytest.importorskip("jwt")``: it needs the ``server`` extra."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.example"
AUDIENCE = "cadenza-api"
NOW = 1_800_000_000.0
ROLE_MAP = {"cadenza-ops": "operator", "auditors": ["viewer", "auditor"]}
DROP = object()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Keys:
    rsa: RSAPrivateKey
    ec: EllipticCurvePrivateKey
    ed: Ed25519PrivateKey
    stranger: RSAPrivateKey


@functools.cache
def issuer_keys() -> Keys:
    """Keys made once per test session: RSA generation is slow."""
    return Keys(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def public_jwk(private: Any, kid: str, alg: str | None) -> dict[str, Any]:
    algorithm: Any
    if isinstance(private, RSAPrivateKey):
        algorithm = RSAAlgorithm
    elif isinstance(private, EllipticCurvePrivateKey):
        algorithm = ECAlgorithm
    else:
        algorithm = OKPAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "use": "sig"}, **({"alg": alg} if alg else {}))
    return jwk


def standard_jwks(keys: Keys) -> list[dict[str, Any]]:
    return [
        public_jwk(keys.rsa, "rsa-1", "RS256"),
        public_jwk(keys.rsa, "rsa-ps", None),
        public_jwk(keys.ec, "ec-1", "ES256"),
        public_jwk(keys.ed, "ed-1", "EdDSA"),
    ]


class Issuer:
    """Discovery and JWKS behind a MockTransport; what it serves can change mid-test."""

    def __init__(self, jwks: list[dict[str, Any]], *, names: str = ISSUER) -> None:
        self.jwks = jwks
        self.names = names
        self.down = False
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": self.names, "jwks_uri": f"{ISSUER}/jwks"})
        if request.url.path == "/jwks":
            return httpx.Response(200, json={"keys": self.jwks})
        return httpx.Response(404)

    @property
    def fetches(self) -> int:
        return self.paths.count("/jwks")


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "groups": ["cadenza-ops", "staff"],
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(
    private: Any, alg: str, kid: str | None, payload: dict[str, Any] | None = None, **headers: Any
) -> str:
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(payload or claims(), private, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None = None) -> str:
    """A token built by hand, for what PyJWT refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"
