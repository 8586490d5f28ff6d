"""Authentication of a request: ``Authorization: Bearer <credential>``, where the credential
is an API key (``cdz_...``, looked up by its hash in the server tables) or a token of a
configured OIDC issuer. Every failure is one line of why, recorded in the server's audit log
before the request is answered."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from cadenza.server.access import Access, Caller
from cadenza.server.audit_log import AuditWriter
from cadenza.server.auth import AuthenticationError, Identity, IssuerUnavailable
from cadenza.server.auth import keys as api_keys
from cadenza.server.tables import AuditEntry, ServerTables

__all__ = ["Authenticator", "RequestInfo"]

#: ``last_used`` is written at most this often per key (a write per request would cost more
#: than the request).
TOUCH_INTERVAL = 60.0
_MAX_HEADER = 16 * 1024


class RequestInfo:
    """What the audit log says about a request."""

    __slots__ = ("client", "method", "path")

    def __init__(self, method: str, path: str, client: str) -> None:
        self.method = method
        self.path = path[:500]
        self.client = client[:100]


class Authenticator:
    def __init__(
        self,
        tables: ServerTables,
        access: Access,
        audit: AuditWriter,
        verifiers: Sequence[Any] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tables = tables
        self.access = access
        self.audit = audit
        self.verifiers = {v.config.issuer: v for v in verifiers}
        self.clock = clock
        self._touched: dict[str, float] = {}

    async def authenticate(self, authorization: str | None, request: RequestInfo) -> Caller:
        """The caller the header proves; :class:`AuthenticationError` otherwise (its
        :class:`IssuerUnavailable` kind when the token could not be checked), recorded."""
        try:
            identity = await self._identity(authorization)
        except AuthenticationError as exc:
            kind = (
                "issuer_unavailable"
                if isinstance(exc, IssuerUnavailable)
                else "authentication_failed"
            )
            entry = AuditEntry(
                time.time(),
                kind,
                str(exc),
                method=request.method,
                path=request.path,
                client=request.client,
            )
            await self.audit.add(entry)
            raise
        return self.access.caller(identity)

    async def _identity(self, authorization: str | None) -> Identity:
        if not authorization:
            raise AuthenticationError(
                "no credentials: send Authorization: Bearer <API key or token>"
            )
        if len(authorization) > _MAX_HEADER:
            raise AuthenticationError("Authorization header too large")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError(
                "unsupported Authorization scheme: send Bearer <API key or token>"
            )
        if credential.startswith(api_keys.PREFIX):
            return await self._key(credential)
        return await self._token(credential)

    async def _key(self, key: str) -> Identity:
        api_keys.check_format(key)
        record = await self.tables.key_by_hash(api_keys.key_hash(key))
        if record is None:
            raise AuthenticationError("API key not recognised")
        now = self.clock()
        identity = api_keys.verify(key, record, now)
        if now - self._touched.get(record.id, float("-inf")) >= TOUCH_INTERVAL:
            self._touched[record.id] = now
            if len(self._touched) > 100_000:
                self._touched.clear()
            await self.tables.touch_key(record.id, now)
        return identity

    async def _token(self, token: str) -> Identity:
        if not self.verifiers:
            raise AuthenticationError(
                "bearer tokens are not accepted here: no OIDC issuer is configured "
                "([[server.oidc]] in cadenza.toml); use an API key"
            )
        if len(self.verifiers) == 1:
            verifier = next(iter(self.verifiers.values()))
        else:
            verifier = self.verifiers.get(_claimed_issuer(token))
            if verifier is None:
                raise AuthenticationError("token from an issuer this server does not trust")
        identity: Identity = await verifier.authenticate(token)
        return identity


def _claimed_issuer(token: str) -> str:
    """The ``iss`` a token claims, unverified: only to pick which issuer's verifier checks it
    (which compares it exactly again)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16 * 1024:
        return ""
    try:
        raw = parts[1].encode("ascii")
        payload = json.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        return ""
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else ""
