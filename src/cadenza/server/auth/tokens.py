"""OAuth 2.0 / OpenID Connect bearer tokens: JWTs signed with keys the issuer publishes.

Three stages, each a plain function except the second: checks of the header that need no key
(:func:`check_header`), the issuer's key set (fetched and searched by :mod:`.jwks`, cached by
:class:`OIDCVerifier`), and checks of the signature and claims against one key with an explicit
``now`` (:func:`verify_with_key`). Whatever the token says is checked against the configuration,
never the other way round: the algorithm must be on the allow-list, the key comes only from the
issuer's JWKS (``jku``, ``jwk``, ``x5u`` and ``x5c`` headers are refused), and the issuer is
compared as an exact string."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from cadenza.core.errors import CadenzaError
from cadenza.server.auth import AuthenticationError, Identity, IssuerUnavailable
from cadenza.server.auth.jwks import (
    ASYMMETRIC_ALGORITHMS,
    KeySet,
    check_url,
    fetch_keys,
    fetch_keys_sync,
    select_key,
    shown,
)

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "OIDCConfig",
    "OIDCVerifier",
    "check_header",
    "identity_from_claims",
    "verify_with_key",
]

DEFAULT_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
MAX_LEEWAY = 300.0
_KEY_HEADERS = ("jku", "jwk", "x5u", "x5c")


@dataclass(frozen=True, slots=True)
class OIDCConfig:
    """How tokens of one issuer are accepted and turned into identities.

    ``role_claim`` names the claim that holds the caller's groups (``groups``, ``roles``, or a
    dotted path such as ``realm_access.roles``); ``role_map`` says which Cadenza role(s) each
    group grants. Unmapped groups grant nothing: an identity provider has many groups, and
    only ones the operator named may carry power here. ``name_prefix`` is prepended to the
    subject; give each issuer its own prefix when several are configured.

    ``nbf`` is checked whenever present but required only with ``require_nbf``, because
    common issuers (Auth0, Okta, Keycloak) do not put it into access tokens."""

    issuer: str
    audience: str
    role_claim: str = "groups"
    role_map: Mapping[str, str | Collection[str]] = field(default_factory=dict)
    subject_claim: str = "sub"
    name_prefix: str = "oidc:"
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: float = 60.0
    require_nbf: bool = False
    refresh_interval: float = 30.0
    max_key_age: float = 3600.0
    timeout: float = 5.0
    max_response_bytes: int = 256 * 1024
    max_token_bytes: int = 16 * 1024
    allow_http_loopback: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.audience:
            problems.append("audience is empty: name this server's client id or API audience")
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            problems.append(
                f"algorithms {bad or '(none)'} not allowed: choose from "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))} (never HS*, never none)"
            )
        if not 0 <= self.leeway <= MAX_LEEWAY:
            problems.append(f"leeway must be between 0 and {MAX_LEEWAY:g} seconds")
        if self.refresh_interval < 0 or self.max_key_age <= 0 or self.timeout <= 0:
            problems.append("refresh_interval, max_key_age and timeout must be positive")
        if not self.subject_claim or not self.role_claim:
            problems.append("subject_claim and role_claim must name claims")
        if problems:
            raise CadenzaError(f"OIDC issuer {self.issuer!r}: {'; '.join(problems)}")
        try:
            check_url(self.issuer, allow_http_loopback=self.allow_http_loopback, what="issuer")
        except AuthenticationError as exc:
            raise CadenzaError(str(exc)) from None
        roles = {
            group: frozenset([granted] if isinstance(granted, str) else granted)
            for group, granted in self.role_map.items()
        }
        if not all(isinstance(r, str) and r for granted in roles.values() for r in granted):
            raise CadenzaError(f"OIDC issuer {self.issuer!r}: role_map must grant role names")
        object.__setattr__(self, "role_map", roles)
        object.__setattr__(self, "algorithms", tuple(self.algorithms))

    def roles_for(self, groups: Collection[str]) -> frozenset[str]:
        """The Cadenza roles that the issuer's ``groups`` grant."""
        granted = (self.role_map.get(group, ()) for group in groups)
        return frozenset().union(*(frozenset([g]) if isinstance(g, str) else g for g in granted))


def check_header(token: str, config: OIDCConfig) -> dict[str, Any]:
    """The token's header, once it passes every check that needs no key: size, shape,
    algorithm on the allow-list, no key-carrying headers, no critical extensions (Cadenza
    understands none, and RFC 7515 requires refusing those not understood)."""
    if len(token) > config.max_token_bytes:
        raise AuthenticationError(
            f"token too large ({len(token)} bytes; at most {config.max_token_bytes})"
        )
    parts = token.split(".")
    try:
        if len(parts) != 3 or not token.isascii():
            raise ValueError
        raw = parts[0].encode("ascii")
        header = json.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise AuthenticationError("not a JWT: expected three base64url parts with a JSON header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise AuthenticationError("unsigned token (alg none) refused")
    if alg not in config.algorithms:
        raise AuthenticationError(
            f"algorithm {shown(alg)} not allowed (allowed: {', '.join(config.algorithms)})"
        )
    for name in _KEY_HEADERS:
        if name in header:
            raise AuthenticationError(
                f"{name!r} header refused: keys come only from the issuer's JWKS"
            )
    if "crit" in header:
        raise AuthenticationError(f"critical header extension(s) {shown(header['crit'])} refused")
    if "kid" in header and not isinstance(header["kid"], str):
        raise AuthenticationError("malformed kid header: must be a string")
    return header


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthenticationError(f"malformed {name!r} claim: must be seconds since the epoch")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, config: OIDCConfig) -> float:
    """Check ``exp``, ``nbf`` and ``iat`` against ``now`` with the configured leeway; return
    ``exp``. Done here rather than by PyJWT because PyJWT reads the wall clock."""
    exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise AuthenticationError("token has no 'exp' claim: tokens must expire")
    if now >= exp + config.leeway:
        raise AuthenticationError(f"token expired {int(now - exp)} s ago")
    if nbf is None and config.require_nbf:
        raise AuthenticationError("token has no 'nbf' claim")
    if nbf is not None and now + config.leeway < nbf:
        raise AuthenticationError(f"token not valid yet (nbf is {int(nbf - now)} s ahead)")
    if iat is not None and now + config.leeway < iat:
        raise AuthenticationError(f"token issued in the future (iat is {int(iat - now)} s ahead)")
    return exp


def _claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim named ``path``, or reached by its dotted parts. The literal name wins, since
    namespaced claims (``https://example.com/roles``) contain dots."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def identity_from_claims(claims: Mapping[str, Any], config: OIDCConfig, exp: float) -> Identity:
    """The caller named by verified claims, with the Cadenza roles their groups map to. A
    missing role claim means no roles, not a refusal: authentication proves who the caller
    is, and authorization then refuses what they may not do."""
    subject = claims.get(config.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError(f"token has no {config.subject_claim!r} claim to name the user")
    # The name goes into the audit trail: one printable line of reasonable length.
    if len(subject) > 256 or not subject.isprintable():
        raise AuthenticationError(f"malformed {config.subject_claim!r} claim: not a usable name")
    # An unverified email is whatever the user typed at the issuer: never a name to trust.
    if config.subject_claim == "email" and claims.get("email_verified") is not True:
        raise AuthenticationError("token's email is not verified by the issuer")
    groups = _claim_at(claims, config.role_claim)
    if groups is None:
        groups = []
    elif isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise AuthenticationError(
            f"malformed {config.role_claim!r} claim: must be a string or a list of strings"
        )
    return Identity(config.name_prefix + subject, config.roles_for(groups), "oidc", exp)


_JWT = jwt.PyJWT()
_PYJWT_OPTIONS: Any = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": True,
    "verify_aud": True,
    "require": ["exp", "iss", "aud"],
    "enforce_minimum_key_length": True,
}


def verify_with_key(
    token: str, header: Mapping[str, Any], jwk: Mapping[str, Any], config: OIDCConfig, now: float
) -> Identity:
    """Verify the signature with ``jwk`` under the header's (allow-listed) algorithm, then
    the claims at time ``now``."""
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in config.algorithms:  # check_header refuses it first; this keeps the rule local
        raise AuthenticationError(f"algorithm {shown(alg)} not allowed")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError:
        raise AuthenticationError(f"issuer key {shown(kid)} is unusable for {alg}") from None
    try:
        claims = _JWT.decode_complete(
            token,
            key,
            algorithms=[alg],
            audience=config.audience,
            issuer=config.issuer,
            options=_PYJWT_OPTIONS,
        )["payload"]
    except jwt.InvalidSignatureError:
        raise AuthenticationError(
            f"signature does not verify with issuer key {shown(kid)}"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token has no {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise AuthenticationError(f"token is not from issuer {config.issuer}") from None
    except jwt.InvalidAudienceError:
        raise AuthenticationError(f"token is not for audience {config.audience!r}") from None
    except jwt.InvalidKeyError:
        raise AuthenticationError(f"issuer key {shown(kid)} is too weak for {alg}") from None
    except jwt.PyJWTError:
        raise AuthenticationError(
            "malformed token: payload or signature cannot be decoded"
        ) from None
    return identity_from_claims(claims, config, _check_times(claims, now, config))


class OIDCVerifier:
    """Verifies bearer tokens of one issuer, keeping its keys between calls.

    Keys are fetched on first use, again when older than ``max_key_age``, and again when a
    token names an unknown ``kid`` (the issuer may have rotated). Every fetch, failed or not,
    starts a quiet period of ``refresh_interval`` seconds in which no other is made: a flood
    of tokens with made-up kids, or an issuer that is down, costs the issuer at most one
    request per period, and callers get an immediate answer instead of waiting on it.
    Concurrent callers that need a fetch share one. ``clock`` gives seconds since the epoch."""

    def __init__(
        self,
        config: OIDCConfig,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._transport = transport
        self._sync_transport = sync_transport
        self._keys: KeySet | None = None
        self._fetched_at: float | None = None
        self._fetch_count = 0
        self._fetch_error = ""
        self._alock = asyncio.Lock()
        self._lock = threading.Lock()

    @property
    def fetches(self) -> int:
        """How many times keys were fetched or tried: for tests and metrics."""
        return self._fetch_count

    async def authenticate(self, token: str) -> Identity:
        """The identity a token proves, or :class:`AuthenticationError`."""
        header = check_header(token, self.config)
        if self._wants_fetch(header):
            async with self._alock:
                if self._wants_fetch(header):
                    self._start_fetch()
                    try:
                        self._keys = await fetch_keys(self.config, self._clock(), self._transport)
                    except IssuerUnavailable as exc:
                        self._fetch_error = str(exc)
        return self._finish(token, header)

    def authenticate_sync(self, token: str) -> Identity:
        """:meth:`authenticate` for callers without an event loop."""
        header = check_header(token, self.config)
        if self._wants_fetch(header):
            with self._lock:
                if self._wants_fetch(header):
                    self._start_fetch()
                    try:
                        self._keys = fetch_keys_sync(
                            self.config, self._clock(), self._sync_transport
                        )
                    except IssuerUnavailable as exc:
                        self._fetch_error = str(exc)
        return self._finish(token, header)

    def _wants_fetch(self, header: Mapping[str, Any]) -> bool:
        now = self._clock()
        last = self._fetched_at
        # A clock that went backwards must not hold fetches off for good.
        if last is not None and last <= now < last + self.config.refresh_interval:
            return False
        if self._keys is None or now - self._keys.fetched >= self.config.max_key_age:
            return True
        return select_key(header, self._keys) is None

    def _start_fetch(self) -> None:
        self._fetched_at = self._clock()
        self._fetch_count += 1
        self._fetch_error = ""

    def _finish(self, token: str, header: Mapping[str, Any]) -> Identity:
        now = self._clock()
        if self._keys is None:
            wait = (self._fetched_at or now) + self.config.refresh_interval - now
            raise IssuerUnavailable(
                f"{self._fetch_error or 'issuer keys not fetched yet'}"
                f" (next attempt in {max(0, math.ceil(wait))} s)"
            )
        jwk = select_key(header, self._keys)
        if jwk is None:
            age = int(now - self._keys.fetched)
            raise AuthenticationError(
                f"unknown signing key {shown(header.get('kid'))}: not in the issuer's JWKS "
                f"(fetched {age} s ago)"
            )
        return verify_with_key(token, header, jwk, self.config, now)
