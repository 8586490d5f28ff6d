"""Who a request comes from, proven: OIDC bearer tokens (:mod:`.tokens`) and API keys
(:mod:`.keys`) both end in an :class:`Identity` or an :class:`AuthenticationError`.

The two types live here, with no third-party imports, so that code which only handles
identities (the CLI, authorization checks) does not need the ``server`` extra; import
:mod:`.tokens` explicitly where tokens are verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cadenza.core.errors import CadenzaError

__all__ = ["AuthenticationError", "Identity", "IssuerUnavailable"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A proven caller.

    ``name`` carries its origin (``oidc:alice``, ``key:ci``) so that a token or key can never
    pass for a local ``cadenza.toml`` user of the same bare name. ``expires`` (seconds since
    the epoch, ``None`` for a key that never expires) bounds how long a long-lived connection
    may go on trusting it."""

    name: str
    roles: frozenset[str]
    method: Literal["oidc", "api_key"]
    expires: float | None


class AuthenticationError(CadenzaError):
    """A credential was refused; the message says why in one line and never repeats the
    credential. The server answers 401 with it."""


class IssuerUnavailable(AuthenticationError):
    """The token issuer's keys could not be fetched, so no token can be checked. The
    credential may be fine: the server answers 503, not 401, so that clients retry instead of
    discarding their tokens."""
