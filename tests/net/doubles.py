"""Test doubles for outbound calls: sentinel listeners that count connections, a network
backend that records where it is asked to connect, and a scripted resolver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore


class Sentinel:
    """Listeners on 127.0.0.1 and ::1 that count the connections they accept."""

    def __init__(self) -> None:
        self.connections = 0
        self.servers: list[asyncio.Server] = []

    async def start(self) -> None:
        self.servers.append(await asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.p4 = self.servers[0].sockets[0].getsockname()[1]
        try:
            self.servers.append(await asyncio.start_server(self._accept, "::1", 0))
            self.p6 = self.servers[1].sockets[0].getsockname()[1]
        except OSError:  # no IPv6 loopback here: the IPv6 cases still must not connect
            self.p6 = self.p4

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


class Recorder(httpcore.AsyncNetworkBackend):
    """Connects for real to loopback only; records every address it is given."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if host not in ("127.0.0.1", "::1"):
            raise httpcore.ConnectError(f"{host} is unreachable in tests")
        return await self.real.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Names:
    """An injected resolver: a fixed table, and a count of the questions asked."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[min(len(self.asked), len(answers)) - 1]
