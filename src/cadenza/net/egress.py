"""The egress policy: which URLs an outbound call may use and which addresses it may reach.

A call goes only over https, to a host whose every resolved address is globally reachable
(:func:`cadenza.net.addresses.refusal`), unless its endpoint is allow-listed. An allow-list
entry is an *origin*, ``scheme://host[:port]``: it lets calls reach that host and port
whatever it resolves to (an internal service, a receiver on 127.0.0.1 in tests), and an
``http://`` entry also allows plain HTTP to it. Origins, not URL prefixes, because a prefix
compares text (``https://hooks.example`` is a prefix of ``https://hooks.example.evil.net``)
while the security boundary is the host and port that a connection goes to.

Whatever the allow-list says, a URL with credentials (``user@host``), a scheme other than
http(s), or a numeric host in a non-canonical form (``0x7f.1``) is refused: none is needed
by a real receiver and each is a known way around checks that compare text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from cadenza.core.errors import CadenzaError
from cadenza.net.addresses import IPAddress, numeric_host, parse_address, refusal

SCHEMES = {"http": 80, "https": 443}
_CREDENTIALS = re.compile(r"(//)[^/?#@]*@")
ALLOW_SETTING = "webhook_allow"


class EndpointRefused(CadenzaError):
    """The egress policy refuses a URL or the addresses its host resolves to."""


class Origin(NamedTuple):
    scheme: str
    host: str  # lower case, IDNA-encoded, no trailing dot; IPv6 compressed, no brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(entry: str) -> Origin:
    """The origin an allow-list entry names; raises :class:`ValueError` (with the reason)
    for anything else, a URL with a path included."""
    try:
        url = _parse(entry)
        _check_form(url, entry)
    except EndpointRefused as exc:
        raise ValueError(str(exc)) from None
    if url.raw_path not in (b"/", b"") or url.query or url.fragment:
        raise ValueError(
            f"{entry!r} is not an origin: give scheme://host[:port], without a path "
            "(an allow-list entry allows a host and port, not part of a site)"
        )
    return _origin(url)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The rules for one set of calls; hashable, so that connection pools can be kept per
    policy (a connection opened under one allow-list is never reused under another)."""

    allow: frozenset[Origin] = frozenset()

    @classmethod
    def allowing(cls, entries: Iterable[str]) -> EgressPolicy:
        return cls(frozenset(origin_of(e) for e in entries))

    def allows(self, host: str, port: int) -> bool:
        """Whether connections to ``host``:``port`` skip the address check (allow-listed)."""
        key = _host_key(host)
        return any(o.host == key and o.port == port for o in self.allow)

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """``url`` parsed, if the policy lets a call use it; an IP-literal host is judged
        here, a host name when the connection resolves it."""
        parsed = _parse(url)
        _check_form(parsed, url)
        origin = _origin(parsed)
        if origin in self.allow:
            return parsed
        if origin.scheme != "https":
            raise EndpointRefused(
                f"{_shown(url)}: plain http is refused; use https, or allow-list "
                f"{origin} in {ALLOW_SETTING}"
            )
        address = parse_address(origin.host)
        if address is not None and not self.allows(origin.host, origin.port):
            self.check_addresses(origin.host, origin.port, [address])
        return parsed

    def check_addresses(
        self, host: str, port: int, addresses: Sequence[IPAddress]
    ) -> Sequence[IPAddress]:
        """``addresses`` (what ``host`` resolved to) if a connection may use all of them.

        One refused address refuses the host: a name that answers with a private address
        among public ones is either misconfigured or rebinding, and trying the public ones
        only would make the outcome depend on the order of the answer."""
        if self.allows(host, port):
            return addresses
        for address in addresses:
            why = refusal(address)
            if why is not None:
                literal = parse_address(host) is not None
                where = f"{address} is" if literal else f"{host} resolves to {address}, which is"
                # Plain http got this far only if allow-listed, so the origin to name is https.
                origin = Origin("https", _host_key(host), port)
                raise EndpointRefused(
                    f"{where} {why}: outbound calls go only to public addresses "
                    f"(allow-list {origin} in {ALLOW_SETTING} if it is meant)"
                )
        return addresses


def _parse(url: str | httpx.URL) -> httpx.URL:
    if isinstance(url, httpx.URL):
        return url
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise EndpointRefused(f"{_shown(url)}: {_numeric_reason(url) or exc}") from None


def _check_form(url: httpx.URL, given: str | httpx.URL) -> None:
    """Refuse what no policy allows: other schemes, credentials, odd hosts and ports."""
    shown = _shown(given)
    if url.scheme not in SCHEMES:
        scheme = url.scheme or "none"
        raise EndpointRefused(
            f"{shown}: scheme {scheme!r} is refused (only https, or http to an "
            "allow-listed endpoint)"
        )
    if url.userinfo:
        raise EndpointRefused(
            f"{shown}: credentials in the URL (user@host) are refused; send them in a header"
        )
    host = url.raw_host.decode("ascii")
    if not host:
        raise EndpointRefused(f"{shown}: the URL has no host")
    if "%" in host:
        raise EndpointRefused(f"{shown}: the host has escaped characters ({host!r})")
    if url.port is not None and not 0 < url.port < 65536:
        raise EndpointRefused(f"{shown}: port {url.port} is out of range")
    number = numeric_host(host)
    if isinstance(number, str):
        raise EndpointRefused(f"{shown}: host {number}")
    if isinstance(number, IPv4Address) and str(number) != host:
        raise EndpointRefused(
            f"{shown}: host {host!r} is the IPv4 address {number} in a non-canonical "
            "form; write addresses as four decimal numbers"
        )


def _numeric_reason(url: str) -> str | None:
    """A better reason than the URL parser's for a numeric host it rejects (``0177.0.0.1``)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    number = numeric_host(host)
    if isinstance(number, IPv4Address) and str(number) != host:
        return f"host {host!r} is the IPv4 address {number} in a non-canonical form"
    return f"host {number}" if isinstance(number, str) else None


def _host_key(host: str) -> str:
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    address = parse_address(host)
    return str(address) if address is not None else host


def _origin(url: httpx.URL) -> Origin:
    host = _host_key(url.raw_host.decode("ascii"))
    return Origin(url.scheme, host, url.port or SCHEMES[url.scheme])


def _shown(url: str | httpx.URL) -> str:
    """The URL for a message: credentials masked, at most 200 characters."""
    text = _CREDENTIALS.sub(r"\1***@", str(url))
    return text if len(text) <= 200 else text[:197] + "..."
