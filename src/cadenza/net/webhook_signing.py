"""Webhook signatures: Standard Webhooks (https://www.standardwebhooks.com/), and Cadenza's
earlier scheme for receivers built against it.

Standard Webhooks signs ``f"{id}.{timestamp}.{body}"`` with HMAC-SHA256 and sends::

    webhook-id: <message id, the same for every delivery attempt of one message>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 signature> [v1,<base64 signature> ...]

Secrets are ``whsec_`` followed by base64 (24 to 64 random bytes). The header holds one
signature per secret so a secret can be rotated without downtime: sign with the new and the
old one while receivers move over. :func:`verify` is what a receiver runs: it checks the
timestamp against a tolerance (replays of old messages fail) and compares in constant time.
The reference libraries' test vectors are in ``tests/net/test_webhook_signing.py``, so any
receiver that verifies with them verifies what :func:`sign` produces.

The legacy scheme (``X-Cadenza-Timestamp`` and ``X-Cadenza-Signature: sha256=<hex HMAC of
f"{timestamp}.{body}">``, the secret's text as the key) is kept for receivers that check it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

from cadenza.core.errors import CadenzaError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300.0
ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"

Secret = str | bytes


class WebhookVerificationError(CadenzaError):
    """A webhook's headers do not prove that it comes from the holder of a secret, now."""


def decode_secret(secret: Secret) -> bytes:
    """The key bytes of ``secret``: bytes are the key itself; text is base64 after an
    optional ``whsec_`` prefix (padding optional, as the reference libraries accept)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.removeprefix(SECRET_PREFIX).strip()
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"a webhook secret is {SECRET_PREFIX} followed by base64; this one is not"
            ) from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(secret: Secret, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One ``v1,<base64>`` signature of a message."""
    digest = _digest(decode_secret(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()


def sign(
    secrets: Secret | Sequence[Secret], msg_id: str, timestamp: float, body: bytes | str
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with each of ``secrets``
    (current first).

    ``msg_id`` may not contain ``.`` (the spec's rule: the signed text is ``.``-separated, so
    a dot would let one message's signature pass for another's) nor anything that cannot go in
    a header; :func:`message_id` makes any key fit."""
    if not msg_id or not _ID.fullmatch(msg_id):
        raise ValueError(f"webhook id {msg_id!r} must be printable ASCII without '.' or spaces")
    keys = _as_list(secrets)
    if not keys:
        raise ValueError("signing needs at least one secret")
    ts = int(timestamp)
    signatures = " ".join(signature(key, msg_id, ts, body) for key in keys)
    return {ID: msg_id, TIMESTAMP: str(ts), SIGNATURE: signatures}


def verify(
    secrets: Secret | Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes | str,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """The message id, if ``headers`` sign ``body`` with one of ``secrets`` at a time within
    ``tolerance`` seconds of ``now`` (the current time by default; pass it to test, or to
    judge a stored message by when it arrived). Raises :class:`WebhookVerificationError`.

    Signatures of other versions (``v1a``, asymmetric) and unreadable ones are skipped, as
    the spec asks, so that a sender may add schemes without breaking receivers."""
    given = {str(k).lower(): v for k, v in headers.items()}
    msg_id, stamp, header = (given.get(name, "").strip() for name in (ID, TIMESTAMP, SIGNATURE))
    for name, value in ((ID, msg_id), (TIMESTAMP, stamp), (SIGNATURE, header)):
        if not value:
            raise WebhookVerificationError(f"missing header {name}")
    if not (stamp.isascii() and stamp.isdigit()) or str(int(stamp)) != stamp:
        raise WebhookVerificationError(f"{TIMESTAMP} {stamp[:40]!r} is not unix seconds")
    ts, clock = int(stamp), time.time() if now is None else now
    if ts < clock - tolerance:
        raise WebhookVerificationError(
            f"message timestamp too old: {clock - ts:.0f}s ago, tolerance {tolerance:g}s"
        )
    if ts > clock + tolerance:
        raise WebhookVerificationError(
            f"message timestamp too new: {ts - clock:.0f}s ahead, tolerance {tolerance:g}s"
        )
    keys = [decode_secret(s) for s in _as_list(secrets)]
    if not keys:
        raise ValueError("verifying needs at least one secret")
    offered = _v1_signatures(header)
    for key in keys:
        expected = _digest(key, msg_id, ts, body)
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return msg_id
    raise WebhookVerificationError(
        f"no matching signature ({len(offered)} readable v1 signature"
        f"{'' if len(offered) == 1 else 's'}, {len(keys)} secret{'' if len(keys) == 1 else 's'})"
    )


def message_id(key: str) -> str:
    """A ``webhook-id`` for an idempotency key: the key itself where it fits (it has no
    ``.``, ``%``, space or non-ASCII character), else the key with those percent-encoded:
    stable, so every attempt of one step instance sends the same id, and distinct keys keep
    distinct ids."""
    return "".join(c if c != "%" and _ID.fullmatch(c) else _escape(c) for c in key)


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode())


def _v1_signatures(header: str) -> list[bytes]:
    found: list[bytes] = []
    for item in header.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def _as_list(secrets: Secret | Sequence[Secret]) -> list[Secret]:
    return [secrets] if isinstance(secrets, str | bytes) else list(secrets)


_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]+")  # printable ASCII but "." (0x2e), no space


# -- the legacy scheme ---------------------------------------------------------------------


def legacy_signature(secret: Secret, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``, the secret's text the key."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_legacy(
    secret: Secret,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``X-Cadenza-Signature``) signs ``body`` at ``timestamp``
    (``X-Cadenza-Timestamp``) with ``secret``, and the timestamp is within ``tolerance``
    seconds of ``now``. For receivers of the legacy scheme; the comparison takes constant
    time."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    expected = legacy_signature(secret, str(timestamp), raw)
    given = (header or "").strip().encode("utf-8", "replace")
    return hmac.compare_digest(expected.encode(), given)
