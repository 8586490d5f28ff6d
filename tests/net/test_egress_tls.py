"""The pinned connection speaks TLS for the host *name*: it connects to the checked address,
yet sends the name as SNI and verifies the certificate against it (a certificate that names
only the address would fail, and so would one for another name)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cadenza.net import EgressPolicy, guarded_client

pytest.importorskip("cryptography")  # an optional dependency (the server extra)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    return builder.sign(signer, hashes.SHA256())


class TLSReceiver:
    """An https server on 127.0.0.1 with a certificate for ``name`` from a private CA;
    records the SNI names it is asked for and the Host headers it receives."""

    def __init__(self, tmp: Path, name: str) -> None:
        ca_key, key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Cadenza test CA")])
        ca = _certificate("Cadenza test CA", ca_key, ca_name, ca_key, ca=True)
        leaf = _certificate(name, key, ca_name, ca_key, ca=False)
        pem = serialization.Encoding.PEM
        (tmp / "leaf.pem").write_bytes(leaf.public_bytes(pem))
        (tmp / "key.pem").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        self.ca_pem = ca.public_bytes(pem).decode()
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_context.load_cert_chain(tmp / "leaf.pem", tmp / "key.pem")
        self.server_context.sni_callback = self._sni
        self.sni: list[str | None] = []
        self.hosts: list[str] = []

    def _sni(self, sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        self.sni.append(name)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            for line in head.split("\r\n")[1:]:
                key, _, value = line.partition(":")
                if key.lower() == "host":
                    self.hosts.append(value.strip())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> TLSReceiver:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.server_context
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[TLSReceiver]:
    async with TLSReceiver(tmp_path, "hooks.test") as r:
        yield r


async def loopback(host: str, port: int) -> list[str]:
    """Every name is the receiver's address: the test controls DNS, as an attacker might."""
    return ["127.0.0.1"]


async def test_tls_goes_to_the_pinned_address_with_the_name_as_sni(receiver: TLSReceiver) -> None:
    policy = EgressPolicy.allowing([f"https://hooks.test:{receiver.port}"])
    client = guarded_client(policy, resolver=loopback, ssl_context=receiver.client_context())
    async with client:
        answer = await client.post(f"https://hooks.test:{receiver.port}/ship", content=b"{}")
    assert answer.status_code == 200 and answer.text == "ok"
    assert receiver.sni == ["hooks.test"]
    assert receiver.hosts == [f"hooks.test:{receiver.port}"]


async def test_the_certificate_is_verified_for_the_name_not_the_address(
    receiver: TLSReceiver,
) -> None:
    policy = EgressPolicy.allowing(
        [f"https://other.test:{receiver.port}", f"https://127.0.0.1:{receiver.port}"]
    )
    client = guarded_client(policy, resolver=loopback, ssl_context=receiver.client_context())
    async with client:
        for url in (f"https://other.test:{receiver.port}/", f"https://127.0.0.1:{receiver.port}/"):
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(url)
    assert receiver.hosts == []
