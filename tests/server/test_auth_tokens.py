"""OIDC bearer tokens against a test issuer whose keys are made here: the authentication matrix
(every refusal with its reason), claims to identity, and key refresh with its rate limit.

The issuer is an ``httpx.MockTransport`` (see ``issuer.py``); ``test_auth_jwks.py`` has the real
network. Time is an injected clock: nothing waits on the wall clock."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytest.importorskip("jwt", reason="PyJWT comes with the server extra: pip install '.[server]'")
pytest.importorskip("cryptography", reason="cryptography comes with the server extra")

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cadenza.core.errors import CadenzaError
from cadenza.server.auth import AuthenticationError, Identity, IssuerUnavailable
from cadenza.server.auth.tokens import OIDCConfig, OIDCVerifier
from tests.server.issuer import (
    AUDIENCE,
    DROP,
    ISSUER,
    NOW,
    ROLE_MAP,
    Clock,
    Issuer,
    Keys,
    claims,
    forge,
    issuer_keys,
    public_jwk,
    sign,
    standard_jwks,
)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return issuer_keys()


def verifier_for(issuer: Issuer, clock: Clock | None = None, **config: Any) -> OIDCVerifier:
    settings: dict[str, Any] = {"role_map": ROLE_MAP, **config}
    transport = httpx.MockTransport(issuer)
    return OIDCVerifier(
        OIDCConfig(ISSUER, AUDIENCE, **settings),
        clock=clock or Clock(),
        transport=transport,
        sync_transport=transport,
    )


def refused(verifier: OIDCVerifier, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        verifier.authenticate_sync(token)
    message = str(caught.value)
    assert "\n" not in message and token not in message
    assert not any(len(part) > 20 and part in message for part in token.split("."))
    return caught.value


ALICE_OPERATOR = Identity("oidc:alice", frozenset({"operator"}), "oidc", NOW + 300)


@pytest.fixture
def issuer(keys: Keys) -> Issuer:
    return Issuer(standard_jwks(keys))


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [
        ("rsa", "RS256", "rsa-1"),
        ("rsa", "PS256", "rsa-ps"),
        ("ec", "ES256", "ec-1"),
        ("ed", "EdDSA", "ed-1"),
    ],
)
async def test_valid_token_proves_identity_with_mapped_roles(
    keys: Keys, issuer: Issuer, key: str, alg: str, kid: str
) -> None:
    token = sign(getattr(keys, key), alg, kid)
    assert await verifier_for(issuer).authenticate(token) == ALICE_OPERATOR
    assert verifier_for(issuer).authenticate_sync(token) == ALICE_OPERATOR


def public_pem(keys: Keys) -> bytes:
    return keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def rs(k: Keys, **changes: Any) -> str:
    """A token from the issuer's RSA key with changed claims."""
    return sign(k.rsa, "RS256", "rsa-1", claims(**changes))


def rs_headed(k: Keys, **headers: Any) -> str:
    """A token from the issuer's RSA key with extra headers."""
    return sign(k.rsa, "RS256", "rsa-1", **headers)


EARLY, LATE = True, False  # refused before any fetch of keys, or after
HS256_CONFUSION = lambda k: forge({"alg": "HS256", "kid": "rsa-1"}, claims(), public_pem(k))  # noqa: E731
FOREIGN_JWK = lambda k: sign(k.stranger, "RS256", "x", jwk=public_jwk(k.stranger, "x", "RS256"))  # noqa: E731
NOT_JSON_PAYLOAD = lambda k: rs(k).split(".")[0] + ".bm90IGpzb24.c2ln"  # noqa: E731

# case: (token made from the keys, reason expected in the message, when it is refused)
MATRIX: dict[str, tuple[Callable[[Keys], str], str, bool]] = {
    "alg-none": (lambda k: forge({"alg": "none", "kid": "rsa-1"}, claims()), "alg none", EARLY),
    "alg-None": (lambda k: forge({"alg": "None"}, claims()), "alg none", EARLY),
    "no-alg": (lambda k: forge({"kid": "rsa-1"}, claims()), "alg none", EARLY),
    "hs256-with-rsa-public-key": (HS256_CONFUSION, "algorithm 'HS256' not allowed", EARLY),
    "rs384-not-allowed": (lambda k: sign(k.rsa, "RS384", "rsa-1"), "'RS384' not allowed", EARLY),
    "expired": (lambda k: rs(k, exp=NOW - 61), "expired 61 s ago", LATE),
    "future-nbf": (lambda k: rs(k, nbf=NOW + 120), "not valid yet (nbf is 120 s ahead)", LATE),
    "future-iat": (lambda k: rs(k, iat=NOW + 600), "issued in the future", LATE),
    "missing-exp": (lambda k: rs(k, exp=DROP), "no 'exp' claim", LATE),
    "exp-as-string": (lambda k: rs(k, exp="tomorrow"), "malformed 'exp'", LATE),
    "wrong-iss": (lambda k: rs(k, iss="https://other.example"), f"not from issuer {ISSUER}", LATE),
    "iss-suffix-trick": (lambda k: rs(k, iss=ISSUER + ".evil"), "not from issuer", LATE),
    "iss-trailing-slash": (lambda k: rs(k, iss=ISSUER + "/"), "not from issuer", LATE),
    "missing-iss": (lambda k: rs(k, iss=DROP), "no 'iss' claim", LATE),
    "wrong-aud": (lambda k: rs(k, aud="other-api"), "not for audience 'cadenza-api'", LATE),
    "aud-list-without-ours": (lambda k: rs(k, aud=["a", "b"]), "not for audience", LATE),
    "missing-aud": (lambda k: rs(k, aud=DROP), "no 'aud' claim", LATE),
    "unknown-crit": (lambda k: rs_headed(k, crit=["exp"]), "critical header", EARLY),
    "crit-b64": (lambda k: rs_headed(k, crit=["b64"], b64=True), "critical header", EARLY),
    "jku": (lambda k: rs_headed(k, jku="https://evil.example/k"), "'jku' header refused", EARLY),
    "jwk": (FOREIGN_JWK, "'jwk' header refused", EARLY),
    "x5u": (lambda k: rs_headed(k, x5u="https://evil.example/c"), "'x5u' header refused", EARLY),
    "x5c": (lambda k: rs_headed(k, x5c=["MIIB"]), "'x5c' header refused", EARLY),
    "signed-by-key-not-in-jwks": (
        lambda k: sign(k.stranger, "RS256", "rsa-1"),
        "signature does not verify with issuer key 'rsa-1'",
        LATE,
    ),
    "alg-does-not-fit-key": (lambda k: sign(k.ec, "ES256", "rsa-1"), "cannot verify ES256", LATE),
    "alg-not-the-keys-alg": (lambda k: sign(k.rsa, "PS256", "rsa-1"), "cannot verify PS256", LATE),
    "missing-sub": (lambda k: rs(k, sub=DROP), "no 'sub' claim", LATE),
    "empty-sub": (lambda k: rs(k, sub=""), "no 'sub' claim", LATE),
    "sub-with-newline": (lambda k: rs(k, sub="alice\nroot"), "malformed 'sub' claim", LATE),
    "sub-too-long": (lambda k: rs(k, sub="a" * 257), "malformed 'sub' claim", LATE),
    "groups-not-a-list": (lambda k: rs(k, groups={"a": 1}), "malformed 'groups' claim", LATE),
    "kid-not-a-string": (lambda k: forge({"alg": "RS256", "kid": 7}, {}), "malformed kid", EARLY),
    "oversized": (lambda k: rs(k, pad="x" * 20_000), "token too large", EARLY),
    "not-a-jwt": (lambda k: "not-a-token", "not a JWT", EARLY),
    "non-ascii": (lambda k: rs(k) + "é", "not a JWT", EARLY),
    "header-not-json": (lambda k: "e30x.e30.e30", "not a JWT", EARLY),
    "payload-not-json": (NOT_JSON_PAYLOAD, "signature does not verify", LATE),
}


@pytest.mark.parametrize(("make", "reason", "early"), MATRIX.values(), ids=MATRIX.keys())
def test_refusals(
    keys: Keys, issuer: Issuer, make: Callable[[Keys], str], reason: str, early: bool
) -> None:
    error = refused(verifier_for(issuer), make(keys))
    assert reason in str(error)
    assert not isinstance(error, IssuerUnavailable)
    assert issuer.paths == ([] if early else ["/.well-known/openid-configuration", "/jwks"])


async def test_refusals_are_the_same_on_the_async_path(keys: Keys, issuer: Issuer) -> None:
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        await verifier_for(issuer).authenticate(sign(keys.stranger, "RS256", "rsa-1"))


def test_aud_list_containing_ours_is_accepted(keys: Keys, issuer: Issuer) -> None:
    token = sign(keys.rsa, "RS256", "rsa-1", claims(aud=["other", AUDIENCE]))
    assert verifier_for(issuer).authenticate_sync(token) == ALICE_OPERATOR


def test_clock_skew_is_bounded_by_the_leeway(keys: Keys, issuer: Issuer) -> None:
    late = sign(keys.rsa, "RS256", "rsa-1", claims(exp=NOW - 59))
    early = sign(keys.rsa, "RS256", "rsa-1", claims(nbf=NOW + 59, iat=NOW + 59))
    assert verifier_for(issuer).authenticate_sync(late).name == "oidc:alice"
    assert verifier_for(issuer).authenticate_sync(early).name == "oidc:alice"
    assert "expired" in str(refused(verifier_for(issuer, leeway=0), late))
    assert "not valid yet" in str(refused(verifier_for(issuer, leeway=0), early))


def test_nbf_required_only_when_configured(keys: Keys, issuer: Issuer) -> None:
    token = sign(keys.rsa, "RS256", "rsa-1")
    assert verifier_for(issuer).authenticate_sync(token).name == "oidc:alice"
    assert "no 'nbf' claim" in str(refused(verifier_for(issuer, require_nbf=True), token))


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"algorithms": ("RS256", "HS256")}, "never HS*"),
        ({"algorithms": ("none",)}, "never none"),
        ({"algorithms": ()}, "not allowed"),
        ({"leeway": 301}, "leeway"),
        ({"leeway": -1}, "leeway"),
        ({"audience": ""}, "audience is empty"),
        ({"role_map": {"cadenza-ops": [""]}}, "role_map must grant role names"),
        ({"issuer": "http://issuer.example"}, "must be an https URL"),
        ({"issuer": "http://issuer.example", "allow_http_loopback": True}, "is not loopback"),
        ({"issuer": "http://127.0.0.1:8080"}, "allow_http_loopback is off"),
        ({"issuer": "issuer.example"}, "must be an https URL"),
    ],
)
def test_unsafe_configuration_is_refused(config: dict[str, Any], reason: str) -> None:
    settings = {"issuer": ISSUER, "audience": AUDIENCE, **config}
    with pytest.raises(CadenzaError, match=reason.replace("*", r"\*")):
        OIDCConfig(**settings)


def test_loopback_http_issuer_allowed_when_configured() -> None:
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9000"):
        OIDCConfig(f"http://{host}", AUDIENCE, allow_http_loopback=True)


def test_unknown_kid_refreshes_once_then_refuses(keys: Keys, issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    verifier.authenticate_sync(sign(keys.rsa, "RS256", "rsa-1"))
    clock.now += 30
    error = refused(verifier, sign(keys.stranger, "RS256", "rotated"))
    assert "unknown signing key 'rotated': not in the issuer's JWKS (fetched 0 s ago)" in str(error)
    assert issuer.fetches == 2 and verifier.fetches == 2
    refused(verifier, sign(keys.stranger, "RS256", "rotated"))
    assert issuer.fetches == 2


def test_rotated_key_is_picked_up_after_the_quiet_period(keys: Keys, issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    verifier.authenticate_sync(sign(keys.rsa, "RS256", "rsa-1"))
    issuer.jwks = [*issuer.jwks, public_jwk(keys.stranger, "rsa-2", "RS256")]
    rotated = sign(keys.stranger, "RS256", "rsa-2")
    clock.now += 29
    assert "unknown signing key" in str(refused(verifier, rotated))
    assert issuer.fetches == 1
    clock.now += 1
    assert verifier.authenticate_sync(rotated).name == "oidc:alice"
    assert issuer.fetches == 2


async def test_flood_of_unknown_kids_costs_the_issuer_one_fetch(keys: Keys, issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    tokens = [sign(keys.stranger, "RS256", f"made-up-{i}") for i in range(50)]
    results = await asyncio.gather(
        *(verifier.authenticate(t) for t in tokens), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert issuer.fetches == 1
    clock.now += 30
    for token in tokens:
        refused(verifier, token)
    assert issuer.fetches == 2


async def test_concurrent_first_calls_share_one_fetch(keys: Keys, issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    token = sign(keys.ec, "ES256", "ec-1")
    results = await asyncio.gather(*(verifier.authenticate(token) for _ in range(20)))
    assert set(results) == {ALICE_OPERATOR}
    assert issuer.fetches == 1


def test_kid_required_when_the_jwks_has_several_keys(keys: Keys, issuer: Issuer) -> None:
    token = sign(keys.rsa, "RS256", None)
    assert "no kid and the issuer publishes 4 keys" in str(refused(verifier_for(issuer), token))
    alone = Issuer([public_jwk(keys.rsa, "rsa-1", "RS256")])
    assert verifier_for(alone).authenticate_sync(token) == ALICE_OPERATOR


def test_unreachable_issuer_fails_fast_and_is_retried_after_the_quiet_period(
    keys: Keys, issuer: Issuer
) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    token = sign(keys.rsa, "RS256", "rsa-1")
    issuer.down = True
    error = refused(verifier, token)
    assert isinstance(error, IssuerUnavailable)
    assert str(error) == (
        "https://issuer.example/.well-known/openid-configuration: [Errno 111] Connection "
        "refused (next attempt in 30 s)"
    )
    clock.now += 10
    assert "(next attempt in 20 s)" in str(refused(verifier, token))
    assert len(issuer.paths) == 1
    issuer.down = False
    clock.now += 20
    assert verifier.authenticate_sync(token) == Identity(
        "oidc:alice", frozenset({"operator"}), "oidc", NOW + 300
    )


def test_keys_are_refetched_when_old_and_kept_while_the_issuer_is_down(
    keys: Keys, issuer: Issuer
) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock, max_key_age=600)
    token = sign(keys.rsa, "RS256", "rsa-1", claims(exp=NOW + 10_000))
    verifier.authenticate_sync(token)
    clock.now += 600
    issuer.down = True
    assert verifier.authenticate_sync(token).name == "oidc:alice"
    assert verifier.fetches == 2
    issuer.down = False
    issuer.jwks = [public_jwk(keys.ec, "ec-1", "ES256")]
    clock.now += 600
    assert "unknown signing key 'rsa-1'" in str(refused(verifier, token))
    assert verifier.fetches == 3


@pytest.mark.parametrize(
    ("config", "extra", "name", "roles"),
    [
        (
            {"role_claim": "realm_access.roles"},
            {"realm_access": {"roles": ["auditors"]}},
            "oidc:alice",
            {"viewer", "auditor"},
        ),
        (
            {"role_claim": "https://cadenza.example/roles"},
            {"https://cadenza.example/roles": "cadenza-ops"},
            "oidc:alice",
            {"operator"},
        ),
        ({"role_claim": "roles"}, {}, "oidc:alice", set()),
        ({}, {"groups": ["staff", "admin"]}, "oidc:alice", set()),
        (
            {},
            {"groups": ["cadenza-ops", "auditors"]},
            "oidc:alice",
            {"operator", "viewer", "auditor"},
        ),
        ({"name_prefix": "corp:"}, {}, "corp:alice", {"operator"}),
        ({"name_prefix": ""}, {}, "alice", {"operator"}),
        (
            {"subject_claim": "email"},
            {"email": "a@example.com", "email_verified": True},
            "oidc:a@example.com",
            {"operator"},
        ),
    ],
)
def test_identity_from_claims(
    keys: Keys,
    issuer: Issuer,
    config: dict[str, Any],
    extra: dict[str, Any],
    name: str,
    roles: set[str],
) -> None:
    token = sign(keys.rsa, "RS256", "rsa-1", claims(**extra))
    identity = verifier_for(issuer, **config).authenticate_sync(token)
    assert (identity.name, identity.roles) == (name, frozenset(roles))


@pytest.mark.parametrize("verified", [DROP, False, "true"])
def test_unverified_email_never_names_a_user(keys: Keys, issuer: Issuer, verified: Any) -> None:
    token = sign(keys.rsa, "RS256", "rsa-1", claims(email="a@example.com", email_verified=verified))
    error = refused(verifier_for(issuer, subject_claim="email"), token)
    assert "email is not verified" in str(error)


def test_short_rsa_key_is_refused(keys: Keys) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    issuer = Issuer([public_jwk(weak, "weak", "RS256")])
    # PyJWT will not sign with it either, so the token is signed by hand.
    signing_input = forge({"alg": "RS256", "kid": "weak"}, claims()).rsplit(".", 1)[0]
    signature = weak.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    error = refused(verifier_for(issuer), token)
    assert "issuer key 'weak' is too weak for RS256" in str(error)
