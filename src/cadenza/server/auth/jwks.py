"""An OIDC issuer's signing keys: fetched (discovery document, then the JWKS it names), and
the one that must verify a given token chosen from them.

The fetch runs while a request waits for authentication, so every part of it is bounded: a time
budget per request (``timeout``, for connecting, for each read, and for the whole body), a size
limit, no redirects (a redirect could lead to plain http or elsewhere) and no compressed bodies
(a small gzip body can inflate past any limit). Parsing is plain functions over the decoded JSON."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from cadenza.server.auth import AuthenticationError, IssuerUnavailable

if TYPE_CHECKING:
    from cadenza.server.auth.tokens import OIDCConfig

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "KeySet",
    "check_url",
    "discovery_url",
    "fetch_keys",
    "fetch_keys_sync",
    "parse_discovery",
    "parse_jwks",
    "select_key",
    "shown",
]

# Which keys can verify which algorithm: (kty, the curves allowed, or None for any).
_KEY_FITS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"{p}{n}": ("RSA", None) for p in ("RS", "PS") for n in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
# Only public-key algorithms: HS* would take a published key as a shared secret.
ASYMMETRIC_ALGORITHMS = frozenset(_KEY_FITS)
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


@dataclass(frozen=True, slots=True)
class KeySet:
    """The issuer's public signing keys (JWKs as published) and when they were fetched."""

    keys: tuple[Mapping[str, Any], ...]
    fetched: float


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_http_loopback: bool, what: str) -> None:
    """Refuse anything but https, except http to a loopback address where the configuration
    allows it (a test issuer on this machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    host = parts.hostname or ""
    if parts.scheme == "http" and allow_http_loopback and _is_loopback(host):
        return
    why = "and allow_http_loopback is off" if _is_loopback(host) else "and is not loopback"
    raise IssuerUnavailable(f"{what} {url!r} must be an https URL (it is not, {why})")


def discovery_url(issuer: str) -> str:
    """Where OpenID Connect Discovery puts the issuer's metadata."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_discovery(document: Any, config: OIDCConfig) -> str:
    """The ``jwks_uri`` of a discovery document whose ``issuer`` is exactly the configured one
    (OIDC Discovery §4.3: otherwise the document may describe another issuer's keys)."""
    if not isinstance(document, dict):
        raise IssuerUnavailable("discovery document is not a JSON object")
    named = document.get("issuer")
    if named != config.issuer:
        raise IssuerUnavailable(
            f"discovery document names issuer {shown(named)}, not {config.issuer!r}: "
            "fix the configured issuer (it must match exactly, trailing slash included)"
        )
    uri = document.get("jwks_uri")
    if not isinstance(uri, str):
        raise IssuerUnavailable("discovery document has no jwks_uri")
    check_url(uri, allow_http_loopback=config.allow_http_loopback, what="jwks_uri")
    return uri


def _signing_key(jwk: Any) -> bool:
    """Whether a JWK may verify signatures: public (no private or symmetric part), and not
    marked for encryption only."""
    return (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kty"), str)
        and jwk.get("use", "sig") == "sig"
        and (not isinstance(jwk.get("key_ops"), list) or "verify" in jwk["key_ops"])
        and not {"d", "k", "p", "q"} & jwk.keys()
    )


def parse_jwks(document: Any, fetched: float) -> KeySet:
    """The signing keys of a JWKS document; an issuer with none cannot be trusted at all."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise IssuerUnavailable("JWKS is not a JSON object with a keys list")
    usable = tuple(jwk for jwk in keys if _signing_key(jwk))
    if not usable:
        raise IssuerUnavailable("JWKS holds no public signing keys")
    return KeySet(usable, fetched)


def shown(value: object) -> str:
    """A value taken from a token, quoted and cut short, so that an error message stays one
    line and cannot be used to reflect a large payload."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    kty, curves = _KEY_FITS[alg]
    return (
        jwk.get("kty") == kty
        and (curves is None or jwk.get("crv") in curves)
        and jwk.get("alg", alg) == alg
    )


def select_key(header: Mapping[str, Any], keys: KeySet) -> Mapping[str, Any] | None:
    """The issuer's key that must verify this token, or ``None`` when its ``kid`` is not in
    the set (the caller may refresh the set once and ask again). A token without ``kid`` is
    accepted only while the issuer publishes a single key: with several, trying each would
    multiply the cost of every forged token and leave unclear which key vouched for it."""
    alg, kid = header["alg"], header.get("kid")
    if kid is None:
        if len(keys.keys) > 1:
            raise AuthenticationError(
                f"token has no kid and the issuer publishes {len(keys.keys)} keys"
            )
        found = keys.keys[0] if keys.keys else None
    else:
        found = next((k for k in keys.keys if k.get("kid") == kid), None)
    if found is not None and not _fits(found, alg):
        raise AuthenticationError(
            f"issuer key {shown(kid)} (kty {shown(found.get('kty'))}, alg "
            f"{shown(found.get('alg', 'unset'))}) cannot verify {alg}"
        )
    return found


def _client_options(config: OIDCConfig) -> dict[str, Any]:
    return {"timeout": httpx.Timeout(config.timeout), "follow_redirects": False}


def _accept(response: httpx.Response, url: str, config: OIDCConfig) -> None:
    if response.status_code != 200:
        hint = " (redirects are not followed: configure the final URL)"
        raise IssuerUnavailable(
            f"{url} answered HTTP {response.status_code}" + (hint if response.is_redirect else "")
        )
    # Refused before reading, so iter_bytes never inflates anything.
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise IssuerUnavailable(f"{url} answered {encoding}-encoded, though identity was asked")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > config.max_response_bytes:
        raise IssuerUnavailable(
            f"{url} answered {length} bytes (at most {config.max_response_bytes})"
        )


def _add(body: bytearray, chunk: bytes, url: str, config: OIDCConfig, deadline: float) -> None:
    body += chunk
    if len(body) > config.max_response_bytes:
        raise IssuerUnavailable(f"{url} answered over {config.max_response_bytes} bytes")
    if time.monotonic() > deadline:
        raise IssuerUnavailable(f"{url}: no complete answer within {config.timeout:g} s")


def _decode(body: bytes | bytearray, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise IssuerUnavailable(f"{url} did not answer JSON") from None


def _failure(exc: httpx.HTTPError, url: str, config: OIDCConfig) -> IssuerUnavailable:
    if isinstance(exc, httpx.TimeoutException):
        return IssuerUnavailable(f"{url}: no answer within {config.timeout:g} s")
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return IssuerUnavailable(f"{url}: {detail}")


async def _get(client: httpx.AsyncClient, url: str, config: OIDCConfig) -> Any:
    deadline = time.monotonic() + config.timeout
    body = bytearray()
    try:
        async with client.stream("GET", url, headers=_HEADERS) as response:
            _accept(response, url, config)
            async for chunk in response.aiter_bytes():
                _add(body, chunk, url, config, deadline)
    except httpx.HTTPError as exc:
        raise _failure(exc, url, config) from None
    return _decode(body, url)


def _get_sync(client: httpx.Client, url: str, config: OIDCConfig) -> Any:
    deadline = time.monotonic() + config.timeout
    body = bytearray()
    try:
        with client.stream("GET", url, headers=_HEADERS) as response:
            _accept(response, url, config)
            for chunk in response.iter_bytes():
                _add(body, chunk, url, config, deadline)
    except httpx.HTTPError as exc:
        raise _failure(exc, url, config) from None
    return _decode(body, url)


async def fetch_keys(
    config: OIDCConfig, now: float, transport: httpx.AsyncBaseTransport | None = None
) -> KeySet:
    """Discovery, then the JWKS it names. Discovery is read every time, so that a moved
    ``jwks_uri`` is followed; fetches are rare (the verifier rate-limits them)."""
    async with httpx.AsyncClient(transport=transport, **_client_options(config)) as client:
        jwks_uri = parse_discovery(await _get(client, discovery_url(config.issuer), config), config)
        return parse_jwks(await _get(client, jwks_uri, config), now)


def fetch_keys_sync(
    config: OIDCConfig, now: float, transport: httpx.BaseTransport | None = None
) -> KeySet:
    """:func:`fetch_keys` for callers without an event loop."""
    with httpx.Client(transport=transport, **_client_options(config)) as client:
        jwks_uri = parse_discovery(_get_sync(client, discovery_url(config.issuer), config), config)
        return parse_jwks(_get_sync(client, jwks_uri, config), now)
