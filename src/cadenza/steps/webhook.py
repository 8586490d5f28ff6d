"""WEBHOOK: a signed outbound HTTP call, with a timeout, durable retries and an optional
circuit breaker (the same attempt loop as a task; the call stands in for the handler).

The request is ``<method> <url>`` with a JSON body: the state keys named in ``payload`` (the
whole state when it is ``None``). Its headers carry ``Idempotency-Key`` (the same for every
attempt of the step instance, across restarts: receivers de-duplicate on it), ``X-Cadenza-Run``
and ``X-Cadenza-Step``. A 2xx answer completes the step (its JSON, or its text, stored under
``output`` when set); connection errors, timeouts, 5xx, 408 and 429 are retried per the step's
retry policy, waiting at least as long as a ``Retry-After`` header asks; any other status fails
the step at once.

Signing, when ``secret_env`` names an environment variable holding a key::

    X-Cadenza-Timestamp: <unix seconds>
    X-Cadenza-Signature: sha256=<hex HMAC-SHA256(key, f"{timestamp}.{raw body}")>

A receiver recomputes the HMAC over the timestamp header, a ``.`` and the raw body bytes,
compares in constant time and refuses timestamps outside its replay window:
:func:`verify_signature` does exactly that. The key is never logged nor stored in the run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import httpx
import pydantic_core

from cadenza.errors import CadenzaError
from cadenza.graph.ir import Handler, Step
from cadenza.resilience.retry import NonRetryableError
from cadenza.runtime.context import ExecutionContext
from cadenza.runtime.scope import Scope
from cadenza.steps.task import _attempt, run_attempts

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution

DEFAULT_TIMEOUT = 30.0
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

    def line(self) -> str:
        return f"{self.method} {self.url}"


async def execute_webhook(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    timeout = step.policy.timeout or DEFAULT_TIMEOUT
    step = replace(step, policy=replace(step.policy, timeout=timeout))
    output = step.options.get("output")
    # What the latest attempt sent and got back, for its event.
    request: _Request | None = None
    answer: list[httpx.Response] = []

    async def attempt(ctx: ExecutionContext) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        nonlocal request
        request, answer[:] = None, []
        request = _prepare(run, step, dict(scope.state), ctx)
        call = _caller(request, timeout, output, answer)
        sender = replace(step, handler=Handler(call, True, True))
        update, used_fallback = await _attempt(run, sender, scope, ctx)
        if answer and not answer[0].is_success:
            raise WebhookRejected(_describe(request, answer[0]), answer[0].status_code)
        extra: dict[str, Any] = {"fallback": True} if used_fallback else {}
        if answer:
            extra["status"] = answer[0].status_code
        return update, extra

    def describe(exc: Exception, data: dict[str, Any]) -> None:
        if data["error_type"] == "Timeout" and request is not None:
            data["error"] = f"{request.line()} {data['error']}"
        if answer:
            data["status"] = answer[0].status_code
        wait = getattr(exc, "retry_after", None)
        if data["retry"] and wait:
            data["retry_at"] = max(data["retry_at"], time.time() + wait)

    await run_attempts(run, step, scope, path, attempt, describe)


def _prepare(
    run: RunExecution, step: Step, state: dict[str, Any], ctx: ExecutionContext
) -> _Request:
    """Build one attempt's request; raises :class:`WebhookMisconfigured` before any call."""
    opts = step.options
    method = str(opts.get("method") or "POST").upper()
    if method not in METHODS:
        raise WebhookMisconfigured(f"method {method!r} is not one of {', '.join(sorted(METHODS))}")
    url = str(run.ir.config.webhook_endpoints.get(step.name, opts.get("endpoint")) or "")
    if not url.startswith(("http://", "https://")):
        raise WebhookMisconfigured(
            f"endpoint {url!r} is not an http(s) URL (set it, or webhook_endpoints[{step.name!r}])"
        )
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
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise WebhookMisconfigured(
                f"environment variable {secret_env!r} (the webhook's signing secret) is not set"
            )
        timestamp = str(int(time.time()))
        headers["X-Cadenza-Timestamp"] = timestamp
        headers["X-Cadenza-Signature"] = "sha256=" + _sign(secret, timestamp, body)
    return _Request(method, url, body, headers)


def _caller(
    request: _Request, timeout: float, output: str | None, answer: list[httpx.Response]
) -> Callable[..., Awaitable[dict[str, Any] | None]]:
    """The call as an async handler: retryable outcomes raise (and count against a breaker);
    a definite refusal is left in ``answer`` for the executor to fail on."""

    async def call(state: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any] | None:
        client = _client()
        try:
            response = await client.request(
                request.method,
                request.url,
                content=request.body,
                headers=request.headers,
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise TimeoutError(f"{request.line()} timed out") from None
        except httpx.TransportError as exc:
            what = "could not connect" if isinstance(exc, httpx.ConnectError) else "failed"
            detail = str(exc) or type(exc).__name__
            raise ConnectionError(f"{request.line()} {what}: {detail}") from None
        answer.append(response)
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


def _sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (``X-Cadenza-Signature``) signs ``body`` at ``timestamp``
    (``X-Cadenza-Timestamp``) with ``secret``, and the timestamp is within ``tolerance``
    seconds of ``now``. For receivers; the comparison takes constant time."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    scheme, _, given = (header or "").partition("=")
    raw = body.encode() if isinstance(body, str) else body
    expected = _sign(secret, str(timestamp), raw)
    given_bytes = given.strip().encode("utf-8", "replace")
    return scheme == "sha256" and hmac.compare_digest(expected.encode(), given_bytes)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _client() -> httpx.AsyncClient:
    """The running event loop's shared client (a connection pool is bound to its loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(follow_redirects=False)
    return client


async def aclose_clients() -> None:
    """Close the running loop's shared client (engine shutdown, test teardown) and forget
    those of loops that have closed since."""
    loop = asyncio.get_running_loop()
    for key in list(_clients):
        if key is loop or key.is_closed():
            client = _clients.pop(key)
            if key is loop:
                await client.aclose()
