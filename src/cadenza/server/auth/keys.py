"""API keys: their format, their stored form, and the check of a presented key.

A key is ``cdz_`` + 30 random base62 characters (178 bits) + a 6-character base62 CRC32 of
what precedes it, like GitHub's tokens. The prefix makes a leaked key recognisable to secret
scanners and to people; the checksum rejects typos and made-up strings before any store lookup.

Only the SHA-256 of a key is kept. With 178 random bits nothing can be guessed from it, so a
fast unsalted hash is safe (salts and slow hashes protect low-entropy passwords), and it lets a
store find a key's record by one indexed lookup on the hash. Storage itself is not here: these
are pure functions over :class:`KeyRecord`."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from cadenza.core.errors import CadenzaError
from cadenza.server.auth import AuthenticationError, Identity

__all__ = [
    "KEY_LENGTH",
    "PREFIX",
    "KeyRecord",
    "check_format",
    "generate",
    "key_hash",
    "verify",
]

PREFIX = "cdz_"
ALPHABET = string.digits + string.ascii_letters
BODY_LENGTH = 30
CHECKSUM_LENGTH = 6  # 62**6 > 2**32: any CRC32 fits
KEY_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
NAME_PREFIX = "key:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BASE62 = frozenset(ALPHABET)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a store keeps about a key, the key itself excepted.

    ``id`` is public (to list and revoke keys by); ``hash`` is :func:`key_hash` of the key and
    is what a store looks records up by. Times are seconds since the epoch; ``revoked`` is
    when the key was revoked, ``None`` while it is valid."""

    id: str
    name: str
    roles: frozenset[str]
    created: float
    expires: float | None
    hash: str
    revoked: float | None = None
    last_used: float | None = None

    @property
    def identity_name(self) -> str:
        """The name its callers act under: ``key:<name>``, never a local user's bare name."""
        return NAME_PREFIX + self.name


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(prefixed_body: str) -> str:
    return _base62(zlib.crc32(prefixed_body.encode("ascii")), CHECKSUM_LENGTH)


def key_hash(key: str) -> str:
    """The SHA-256 of a key, in hex: its stored form and its lookup key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate(
    name: str, roles: Iterable[str], *, now: float, lifetime: float | None = None
) -> tuple[str, KeyRecord]:
    """A new key and its record, valid from ``now`` for ``lifetime`` seconds (or for good).

    Show the key once and store only the record: the key cannot be recovered from it."""
    if not _NAME.fullmatch(name):
        raise CadenzaError(
            f"key name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    roles = frozenset(roles)
    if not all(isinstance(role, str) and role for role in roles):
        raise CadenzaError("key roles must be non-empty names")
    if lifetime is not None and not lifetime > 0:
        raise CadenzaError(f"key lifetime must be positive, not {lifetime}")
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    key = body + _checksum(body)
    record = KeyRecord(
        id=secrets.token_hex(8),
        name=name,
        roles=roles,
        created=now,
        expires=None if lifetime is None else now + lifetime,
        hash=key_hash(key),
    )
    return key, record


def check_format(key: str) -> None:
    """Refuse what cannot be a Cadenza key (wrong prefix, length, characters or checksum)
    without touching the store, so that guessing and typos cost nothing."""
    if not key.startswith(PREFIX):
        raise AuthenticationError(f"malformed API key: Cadenza keys start with {PREFIX}")
    if len(key) != KEY_LENGTH or not _BASE62.issuperset(key[len(PREFIX) :]):
        raise AuthenticationError(
            f"malformed API key: expected {KEY_LENGTH} characters, letters and digits after "
            f"{PREFIX}"
        )
    body, checksum = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum, _checksum(body)):
        raise AuthenticationError("malformed API key: checksum mismatch (mistyped or truncated)")


def verify(key: str, record: KeyRecord, now: float) -> Identity:
    """The identity ``key`` proves, given the record a store found by its hash.

    The hashes are compared in constant time even so, so that a store which finds records
    some other way (a prefix, a scan) does not open a timing side channel."""
    check_format(key)
    if not hmac.compare_digest(key_hash(key), record.hash):
        raise AuthenticationError("API key not recognised")
    if record.revoked is not None:
        raise AuthenticationError(f"API key {record.id} ({record.name}) was revoked")
    if record.expires is not None and now >= record.expires:
        raise AuthenticationError(f"API key {record.id} ({record.name}) expired")
    return Identity(record.identity_name, record.roles, "api_key", record.expires)
