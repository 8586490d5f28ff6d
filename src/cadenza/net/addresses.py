"""Which IP addresses an outbound call may reach, and what a numeric host really is.

Pure functions over :mod:`ipaddress` values, kept apart from resolution and sockets so the
whole rule set can be tested as a table. The rule: a call may go only to a globally reachable
unicast address. The refused ranges are listed explicitly (so the answer does not depend on
the Python version's ``ipaddress`` tables) and the ``ipaddress`` properties are checked after
them as a safety net. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are
judged by the address they carry: ``::ffff:169.254.169.254`` reaches the metadata service as
surely as ``169.254.169.254`` does."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

_V4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private (RFC 1918) address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT, RFC 6598) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
        ("172.16.0.0/12", "a private (RFC 1918) address"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private (RFC 1918) address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)

_V6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address (RFC 8215)"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "a segment-routing (SRv6) address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_NAT64 = IPv6Network("64:ff9b::/96")
_COMPATIBLE = IPv6Network("::/96")


def refusal(address: IPAddress) -> str | None:
    """Why a call must not go to ``address`` (a phrase: "a loopback address"), or ``None``."""
    if isinstance(address, IPv6Address):
        return _refusal_v6(address)
    for net, why in _V4:
        if address in net:
            return why
    return _by_properties(address)


def _refusal_v6(address: IPv6Address) -> str | None:
    if address.ipv4_mapped is not None:
        return _carried("an IPv4-mapped form", address.ipv4_mapped)
    if address in _NAT64:
        return _carried("a NAT64 form", IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        return _carried("a 6to4 form", address.sixtofour)
    if address.teredo is not None:
        server, client = address.teredo
        return _carried("a Teredo form", server) or _carried("a Teredo form", client)
    if address in _COMPATIBLE and int(address) > 1:
        # Deprecated since 2006 (RFC 4291) and never a real host's address: refused outright.
        carried = IPv4Address(int(address) & 0xFFFFFFFF)
        return f"an IPv4-compatible form of {carried} (deprecated)"
    for net, why in _V6:
        if address in net:
            return why
    return _by_properties(address)


def _carried(form: str, inner: IPv4Address) -> str | None:
    why = refusal(inner)
    return f"{form} of {inner}, {why}" if why else None


def _by_properties(address: IPAddress) -> str | None:
    """The ``ipaddress`` view, for whatever the tables above do not name (IPv6 space outside
    2000::/3 is "reserved", for one)."""
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "an address that is not globally reachable"),
    )
    return next((why for hit, why in checks if hit), None)


_NUMBER = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)\Z")


def numeric_host(host: str) -> IPv4Address | str | None:
    """What the resolver makes of a host that ends in a number, as browsers do (the URL
    standard's "ends in a number" rule): ``None`` for a host name; the IPv4 address for a host
    written as one in any form ``inet_aton`` accepts (``2130706433``, ``0x7f.1``,
    ``0177.0.0.1``, ``127.1``); or, when it is not a valid address at all, why not.

    Such forms exist to slip past checks that compare text, so a caller should accept only
    the canonical dotted quad (``str(address) == host``)."""
    if ":" in host:  # an IPv6 literal (its dotted tail is part of it)
        return None
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # one trailing dot, as in "127.0.0.1."
    if not labels or not _NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4:
        return f"{host!r} ends in a number but has more than four parts"
    values: list[int] = []
    for label in labels:
        value = _number(label)
        if value is None:
            return f"{host!r} ends in a number but {label!r} is not one"
        values.append(value)
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return f"{host!r} ends in a number but is out of the IPv4 range"
    number = last
    for i, byte in enumerate(head):
        number += byte << (8 * (3 - i))
    return IPv4Address(number)


def _number(label: str) -> int | None:
    """One part as ``inet_aton`` reads it: ``0x`` hexadecimal, a leading ``0`` octal."""
    try:
        if label[:2].lower() == "0x":
            return int(label[2:], 16) if len(label) > 2 else None
        if len(label) > 1 and label.startswith("0"):
            return int(label[1:], 8)
        return int(label, 10) if label.isascii() and label.isdigit() else None
    except ValueError:
        return None


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv6 with or without a zone), else ``None``."""
    try:
        return ip_address(text)
    except ValueError:
        return None
