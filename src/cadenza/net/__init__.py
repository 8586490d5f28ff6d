"""Talking HTTP to other services safely: the egress policy (which URLs and addresses an
outbound call may reach), a transport that pins the addresses it checked, and webhook
signatures (Standard Webhooks).

Its own package, not part of ``steps/`` or ``resilience/``: it is about where traffic may go
and how it proves its origin, not about surviving failures, and every outbound caller (the
WEBHOOK step today, notification channels and sinks next) needs the same rules."""

from cadenza.net.egress import EgressPolicy, EndpointRefused, Origin, origin_of
from cadenza.net.transport import GuardedTransport, PinnedBackend, Resolver, guarded_client
from cadenza.net.webhook_signing import (
    WebhookVerificationError,
    message_id,
    sign,
    verify,
    verify_legacy,
)

__all__ = [
    # egress policy
    "EgressPolicy",
    "EndpointRefused",
    "Origin",
    "origin_of",
    # transport
    "GuardedTransport",
    "PinnedBackend",
    "Resolver",
    "guarded_client",
    # signatures
    "WebhookVerificationError",
    "message_id",
    "sign",
    "verify",
    "verify_legacy",
]
