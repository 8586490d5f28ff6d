"""An httpx transport that enforces an :class:`EgressPolicy` and pins what it checked.

A check that resolves a name and then lets the HTTP library resolve it again to connect can be
beaten by DNS rebinding: the first answer is public, the second private. Here the connection
itself does the resolving, once: the network backend under httpcore resolves the host, checks
every address, and connects to one of those addresses, never to the name. The URL keeps the
name, so the ``Host`` header, TLS SNI and certificate verification are all for the name.

Every request, each hop of a redirect included, passes :meth:`EgressPolicy.check_url` before
it reaches the pool, so a client built here is safe even with ``follow_redirects=True``.
Environment proxies are ignored (``trust_env=False``): a proxy would resolve the name itself,
out of reach of the check."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any

import httpcore
import httpx

from cadenza.net.addresses import IPAddress, parse_address
from cadenza.net.egress import EgressPolicy, EndpointRefused

#: Resolves a host name to IP address strings (``("93.184.215.14", "2606:2800::1")``).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for ``host`` (``getaddrinfo``), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address against the policy, connects to those addresses.

    ``inner`` does the connecting (httpcore's own backend unless a test passes another); it is
    only ever given IP addresses, so nothing below this class resolves a name again."""

    def __init__(
        self,
        policy: EgressPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver: Resolver = resolver or system_resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        resolved = await self._resolve(host, port, timeout)
        addresses = self.policy.check_addresses(host, port, resolved)
        failure: Exception | None = None
        for address in addresses:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # _resolve returns at least one address
        raise failure

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        literal = parse_address(host)
        if literal is not None:
            return [literal]
        try:
            async with asyncio.timeout(timeout):
                answer = await self.resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = [parse_address(a) for a in answer]
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        if None in addresses:
            bad = next(a for a, p in zip(answer, addresses, strict=True) if p is None)
            raise EndpointRefused(f"{host} resolves to {bad!r}, which is not an IP address")
        return [a for a in addresses if a is not None]

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EndpointRefused("outbound calls over unix sockets are refused")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, with the policy's URL check and a :class:`PinnedBackend`."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy, resolver, backend),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = self.policy.check_url(request.url)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            response = await self._pool.handle_async_request(core)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def guarded_client(
    policy: EgressPolicy,
    *,
    resolver: Resolver | None = None,
    backend: httpcore.AsyncNetworkBackend | None = None,
    ssl_context: ssl.SSLContext | None = None,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every call obeys ``policy``."""
    transport = GuardedTransport(
        policy, resolver=resolver, backend=backend, ssl_context=ssl_context
    )
    return httpx.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=follow_redirects
    )


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _mapped():
                await close()


# httpcore's errors as httpx's, most specific first (the mapping httpx's own transport makes).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise
