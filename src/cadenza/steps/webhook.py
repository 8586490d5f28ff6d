"""WEBHOOK: a signed outbound HTTP call, with a timeout, durable retries and an optional
circuit breaker (the same attempt loop as a task; the call stands in for the handler).

The request is ``<method> <url>`` with a JSON body: the state keys named in ``payload`` (the
whole state when it is ``None``). Its headers carry ``Idempotency-Key`` (the same for every
attempt of the step instance, across restarts: receivers de-duplicate on it), ``X-Cadenza-Run``
and ``X-Cadenza-Step``. A 2xx answer completes the step (its JSON, or its text, stored under
``output`` when set); connection errors, timeouts, 5xx, 408 and 429 are retried per the step's
retry policy, waiting at least as long as a ``Retry-After`` header asks; any other status fails
the step at once. Redirects are not followed (a 3xx fails the step, as Standard Webhooks
advises): following one would send the signed payload to wherever the receiver points.

Where the call may go is the egress policy's decision (:mod:`cadenza.net.egress`): https to
public addresses only, unless the endpoint's origin is in the workflow's ``webhook_allow``;
the connection goes to the very addresses that were checked (:mod:`cadenza.net.transport`).
A refused endpoint fails the step at once (``EndpointRefused``), before anything is sent.

Signing follows ``config.webhook_signing`` (:mod:`cadenza.net.webhook_signing`):

- ``standard`` (the default): ``webhook-id`` (the idempotency key, so the same for every
  attempt), ``webhook-timestamp`` and, when ``secret_env`` names an environment variable
  holding ``whsec_`` secrets (several, space-separated, current first, to rotate), a
  ``webhook-signature``. Receivers verify with :func:`cadenza.net.webhook_signing.verify` or
  any Standard Webhooks library.
- ``legacy``: ``X-Cadenza-Timestamp`` and ``X-Cadenza-Signature: sha256=<hex HMAC-SHA256(key,
  f"{timestamp}.{raw body}")>`` with the variable's text as the key (the first one, when it
  lists several); :func:`verify_signature` checks it.
- ``both``: all of the above, while receivers move over.

The secret is never logged nor stored in the run.

With ``callback`` (a state key), the step goes on to wait for the receiver to call back: the
call is recorded as its own step instance (``<path>/call``), then the run waits, holding
nothing, until ``cadenza serve`` delivers a signed callback to ``/v1/runs/{run}/callbacks/
{path}`` (:func:`callback_signal`); its body is stored under the key."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import httpx
import pydantic_core

from cadenza.core.context import ExecutionContext
from cadenza.core.errors import CadenzaError, Suspended
from cadenza.core.events import EventType
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.ir import Handler, Step
from cadenza.net.egress import EgressPolicy, EndpointRefused
from cadenza.net.transport import guarded_client
from cadenza.net.webhook_signing import (
    decode_secret,
    legacy_signature,
    message_id,
    sign,
)
from cadenza.net.webhook_signing import verify_legacy as verify_signature
from cadenza.resilience.retry import NonRetryableError
from cadenza.runtime.scope import Scope
from cadenza.steps.task import _attempt, run_attempts

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution

__all__ = [
    "WebhookMisconfigured",
    "WebhookRejected",
    "WebhookUnavailable",
    "aclose_clients",
    "callback_signal",
    "execute_webhook",
    "verify_signature",
]

DEFAULT_TIMEOUT = 30.0
MIN_SECRET_BYTES = 24  # Standard Webhooks: 24 to 64 random bytes
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "GET"})
RETRY_STATUSES = frozenset({408, 429})
try:
    USER_AGENT = f"cadenza/{version('cadenza')}"
except PackageNotFoundError:
    USER_AGENT = "cadenza/dev"


class WebhookMisconfigured(CadenzaError):
    """The step cannot build its request (a missing state key or secret, a bad URL, ...)."""


class WebhookRejected(NonRetryableError):
    """The receiver answered with a status that another attempt will not change (4xx)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WebhookUnavailable(Exception):
    """The receiver answered 5xx, 408 or 429: worth another attempt."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]
    policy: EgressPolicy

    def line(self) -> str:
        return f"{self.method} {self.url}"


@dataclass(slots=True)
class _Outcome:
    """What the latest attempt got: an answer, or the egress policy's refusal of the
    addresses the host resolved to (known only once the connection resolves it)."""

    response: httpx.Response | None = None
    refused: EndpointRefused | None = None


async def execute_webhook(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    timeout = step.policy.timeout or DEFAULT_TIMEOUT
    step = replace(step, policy=replace(step.policy, timeout=timeout))
    output = step.options.get("output")
    # What the latest attempt sent and got back, for its event.
    request: _Request | None = None
    outcome = _Outcome()

    async def attempt(ctx: ExecutionContext) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        nonlocal request, outcome
        request, outcome = None, _Outcome()
        request = _prepare(run, step, dict(scope.state), ctx)
        call = _caller(request, timeout, output, outcome)
        sender = replace(step, handler=Handler(call, True, True))
        update, used_fallback = await _attempt(run, sender, scope, ctx)
        if outcome.refused is not None:
            raise outcome.refused
        answer = outcome.response
        if answer is not None and not answer.is_success:
            raise WebhookRejected(_describe(request, answer), answer.status_code)
        extra: dict[str, Any] = {"fallback": True} if used_fallback else {}
        if answer is not None:
            extra["status"] = answer.status_code
        return update, extra

    def describe(exc: Exception, data: dict[str, Any]) -> None:
        if data["error_type"] == "Timeout" and request is not None:
            data["error"] = f"{request.line()} {data['error']}"
        if outcome.response is not None:
            data["status"] = outcome.response.status_code
        wait = getattr(exc, "retry_after", None)
        if data["retry"] and wait:
            data["retry_at"] = max(data["retry_at"], run.clock.now() + wait)

    callback = step.options.get("callback")
    if not callback:
        await run_attempts(run, step, scope, path, attempt, describe)
        return
    # The call is a step instance of its own, so that a run waiting for the callback (and
    # resumed when it comes) does not call again.
    if f"{path}/call" not in run.progress.done:
        await run_attempts(run, step, scope, f"{path}/call", attempt, describe)
    await _take_callback(run, scope, path, str(callback))


def callback_signal(path: str) -> str:
    """The signal a WEBHOOK step with ``callback=`` waits for once its call succeeded: what
    the server's ``POST /v1/runs/{run}/callbacks/{path}`` delivers."""
    return f"callback:{path}"


async def _take_callback(run: RunExecution, scope: Scope, path: str, key: str) -> None:
    """Complete the step with the first callback not taken yet (its body under ``key``), or
    suspend the run until one arrives."""
    name = callback_signal(path)
    taken = {d["signal_seq"] for d in run.progress.done.values() if "signal_seq" in d}
    arrived = next(
        (s for s in run.progress.signals if s["name"] == name and s["seq"] not in taken), None
    )
    if arrived is None:
        raise Suspended(path, f"a callback to {path!r}")
    data = {"signal_seq": arrived["seq"], "update": {key: arrived.get("payload")}}
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, data=data)


def _prepare(
    run: RunExecution, step: Step, state: dict[str, Any], ctx: ExecutionContext
) -> _Request:
    """Build one attempt's request; raises :class:`WebhookMisconfigured` or
    :class:`EndpointRefused` before any call."""
    opts = step.options
    config = run.ir.config
    method = str(opts.get("method") or "POST").upper()
    if method not in METHODS:
        raise WebhookMisconfigured(f"method {method!r} is not one of {', '.join(sorted(METHODS))}")
    url = str(config.webhook_endpoints.get(step.name, opts.get("endpoint")) or "")
    if not url.startswith(("http://", "https://")):
        raise WebhookMisconfigured(
            f"endpoint {url!r} is not an http(s) URL (set it, or webhook_endpoints[{step.name!r}])"
        )
    policy = _policy(config.webhook_allow)
    policy.check_url(url)
    output = opts.get("output")
    if output is not None and run.ir.schema.check_keys([output]):
        raise WebhookMisconfigured(
            f"output key {output!r} is not in the state schema {run.ir.schema.name}"
        )
    keys = opts.get("payload")
    if keys is None:
        payload = state
    else:
        missing = [k for k in keys if k not in state]
        if missing:
            raise WebhookMisconfigured(
                f"payload key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"not in the state (keys: {', '.join(sorted(state)) or 'none'})"
            )
        payload = {k: state[k] for k in keys}
    try:
        body = pydantic_core.to_json(payload)
    except pydantic_core.PydanticSerializationError as exc:
        raise WebhookMisconfigured(f"the payload cannot be sent as JSON: {exc}") from None
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    headers |= {str(k): str(v) for k, v in (opts.get("headers") or {}).items()}
    # Set last: extra headers cannot replace these.
    headers |= {"Idempotency-Key": ctx.idempotency_key, "X-Cadenza-Run": ctx.run_id}
    headers["X-Cadenza-Step"] = ctx.path
    secret_env = opts.get("secret_env")
    now = run.clock.now()
    headers |= _signatures(config, secret_env, ctx.idempotency_key, body, now)
    return _Request(method, url, body, headers, policy)


def _signatures(
    config: WorkflowConfiguration, secret_env: str | None, key: str, body: bytes, now: float
) -> dict[str, str]:
    """The signing headers ``config.webhook_signing`` asks for (see the module's text)."""
    scheme = config.webhook_signing
    timestamp = int(now)  # of this attempt: a retry is signed afresh
    secrets = _secrets(secret_env) if secret_env else []
    headers: dict[str, str] = {}
    if scheme in ("standard", "both"):
        msg_id = message_id(key)
        headers |= {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
        if secrets:
            for secret in secrets:
                _check_standard_secret(secret_env, secret)
            headers |= sign(secrets, msg_id, timestamp, body)
    if scheme in ("legacy", "both") and secrets:
        headers["X-Cadenza-Timestamp"] = str(timestamp)
        headers["X-Cadenza-Signature"] = legacy_signature(secrets[0], str(timestamp), body)
    return headers


def _secrets(secret_env: str) -> list[str]:
    secrets = os.environ.get(secret_env, "").split()
    if not secrets:
        raise WebhookMisconfigured(
            f"environment variable {secret_env!r} (the webhook's signing secret) is not set"
        )
    return secrets


def _check_standard_secret(secret_env: str | None, secret: str) -> None:
    fix = (
        'generate one with: python -c "import base64, os; '
        "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\", or set "
        "webhook_signing='legacy' for the X-Cadenza-Signature scheme"
    )
    try:
        size = len(decode_secret(secret))
    except ValueError:
        raise WebhookMisconfigured(
            f"environment variable {secret_env!r} does not hold a Standard Webhooks secret "
            f"(whsec_ + base64); {fix}"
        ) from None
    if size < MIN_SECRET_BYTES:
        raise WebhookMisconfigured(
            f"the secret in {secret_env!r} has {size} bytes, fewer than the "
            f"{MIN_SECRET_BYTES} Standard Webhooks asks for; {fix}"
        )


@lru_cache(maxsize=256)
def _policy(allow: tuple[str, ...]) -> EgressPolicy:
    return EgressPolicy.allowing(allow)


def _caller(
    request: _Request, timeout: float, output: str | None, outcome: _Outcome
) -> Callable[..., Awaitable[dict[str, Any] | None]]:
    """The call as an async handler: retryable outcomes raise (and count against a breaker);
    a definite refusal, of the receiver or of the egress policy, is left in ``outcome`` for
    the executor to fail on."""

    async def call(state: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any] | None:
        client = _client(request.policy)
        try:
            response = await client.request(
                request.method,
                request.url,
                content=request.body,
                headers=request.headers,
                timeout=timeout,
            )
        except EndpointRefused as exc:
            outcome.refused = exc
            return None
        except httpx.TimeoutException:
            raise TimeoutError(f"{request.line()} timed out") from None
        except httpx.TransportError as exc:
            what = "could not connect" if isinstance(exc, httpx.ConnectError) else "failed"
            detail = str(exc) or type(exc).__name__
            raise ConnectionError(f"{request.line()} {what}: {detail}") from None
        outcome.response = response
        code = response.status_code
        if code >= 500 or code in RETRY_STATUSES:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise WebhookUnavailable(_describe(request, response), code, retry_after)
        if not response.is_success or output is None:
            return None
        return {output: _content(response)}

    return call


def _describe(request: _Request, response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    status = f"{response.status_code} {response.reason_phrase}".rstrip()
    if response.is_redirect:
        where = response.headers.get("Location", "")[:200]
        text = f"redirect to {where!r} not followed; set the endpoint to the final URL"
    return f"{request.line()} answered {status}" + (f": {text}" if text else "")


def _content(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return pydantic_core.from_json(response.content)
    except ValueError:
        return response.text


def _retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (an HTTP date is ignored)."""
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[EgressPolicy, httpx.AsyncClient]
] = weakref.WeakKeyDictionary()


def _client(policy: EgressPolicy) -> httpx.AsyncClient:
    """The running event loop's shared client for ``policy``: a connection pool is bound to
    its loop, and kept per policy so that a connection opened to an allow-listed address is
    never reused by a workflow whose policy refuses it."""
    pools = _clients.setdefault(asyncio.get_running_loop(), {})
    client = pools.get(policy)
    if client is None or client.is_closed:
        client = pools[policy] = guarded_client(policy)
    return client


async def aclose_clients() -> None:
    """Close the running loop's shared clients (engine shutdown, test teardown) and forget
    those of loops that have closed since."""
    loop = asyncio.get_running_loop()
    for key in list(_clients):
        if key is loop or key.is_closed():
            pools = _clients.pop(key)
            if key is loop:
                for client in pools.values():
                    await client.aclose()
