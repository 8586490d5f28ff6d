"""The egress guard end to end: real requests through the guarded client, with sentinel
listeners on loopback counting connections. A refused URL must raise ``EndpointRefused``
and reach nothing: no connection attempt below the guard, no connection to a sentinel.

Host names resolve through an injected resolver (no DNS in tests); the network backend under
the guard records every address it is asked to connect to, connects for real only to
loopback (where the sentinels are) and fails anything else as unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.http_stub import Reply, Stub
from tests.net.doubles import Names, Recorder, Sentinel

from cadenza.net import EgressPolicy, EndpointRefused, guarded_client

PUBLIC = "93.184.215.14"
NAMES = {
    "localhost": [["127.0.0.1", "::1"]],
    "localhost.": [["127.0.0.1", "::1"]],
    "internal.example": [["10.0.0.5"]],
    "metadata.example": [["169.254.169.254"]],
    "mixed.example": [[PUBLIC, "127.0.0.1"]],
    "v6.example": [["::1"]],
    "mapped.example": [["::ffff:127.0.0.1"]],
    "cgnat.example": [["100.64.0.1"]],
    "public.example": [[PUBLIC]],
}


@pytest.fixture
async def sentinel() -> AsyncIterator[Sentinel]:
    s = Sentinel()
    await s.start()
    yield s
    await s.stop()


# (URL, a phrase the refusal must contain); {p4} and {p6} are the sentinels' ports.
MATRIX: list[tuple[str, str]] = [
    # loopback, every way of writing it
    ("http://127.0.0.1:{p4}/", "plain http"),
    ("https://127.0.0.1:{p4}/", "loopback"),
    ("http://[::1]:{p6}/", "plain http"),
    ("https://[::1]:{p6}/", "loopback"),
    ("https://localhost:{p4}/", "loopback"),
    ("https://localhost.:{p4}/", "loopback"),
    ("http://2130706433/", "non-canonical"),
    ("https://2130706433:{p4}/", "non-canonical"),
    ("http://0x7f.1/", "non-canonical"),
    ("https://0x7f.1:{p4}/", "non-canonical"),
    ("https://0x7f000001:{p4}/", "non-canonical"),
    ("http://0177.0.0.1/", "non-canonical"),
    ("https://127.1:{p4}/", "non-canonical"),
    ("https://127.0.0.1.:{p4}/", "non-canonical"),
    ("https://0.0.0.0:{p4}/", "unspecified"),
    ("https://[::]:{p6}/", "unspecified"),
    ("https://[::ffff:127.0.0.1]:{p4}/", "IPv4-mapped form of 127.0.0.1"),
    ("https://[::ffff:7f00:1]:{p4}/", "IPv4-mapped form of 127.0.0.1"),
    ("https://[::127.0.0.1]:{p4}/", "IPv4-compatible"),
    ("https://[64:ff9b::7f00:1]:{p4}/", "NAT64 form of 127.0.0.1"),
    ("https://[2002:7f00:1::]:{p4}/", "6to4 form of 127.0.0.1"),
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "Teredo form of 127.0.0.1"),
    # credentials in the URL, whatever the host
    ("http://user@127.0.0.1:{p4}/", "credentials"),
    ("https://user:pw@127.0.0.1:{p4}/", "credentials"),
    ("https://user@public.example/", "credentials"),
    # cloud metadata and link-local
    ("http://169.254.169.254/latest/meta-data/", "plain http"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "plain http"),
    ("https://[::ffff:169.254.169.254]/", "IPv4-mapped form of 169.254.169.254"),
    ("https://[::ffff:a9fe:a9fe]/", "IPv4-mapped form of 169.254.169.254"),
    ("https://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
    ("https://0xa9fea9fe/", "non-canonical"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fd00:ec2::254]/", "unique local"),
    ("https://metadata.example/", "resolves to 169.254.169.254"),
    # private, shared and other non-public ranges
    ("https://10.0.0.1/", "RFC 1918"),
    ("https://172.16.0.1/", "RFC 1918"),
    ("https://172.31.255.255/", "RFC 1918"),
    ("https://192.168.1.1/", "RFC 1918"),
    ("https://012.0.0.1/", "non-canonical"),
    ("https://100.64.0.1/", "carrier-grade NAT"),
    ("https://100.127.255.254/", "carrier-grade NAT"),
    ("https://[fc00::1]/", "unique local"),
    ("https://[fd12:3456::1]/", "unique local"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://192.0.2.1/", "documentation"),
    ("https://198.18.0.1/", "benchmarking"),
    # names that resolve to refused addresses
    ("https://internal.example/", "resolves to 10.0.0.5"),
    ("https://cgnat.example/", "resolves to 100.64.0.1"),
    ("https://v6.example:{p6}/", "resolves to ::1"),
    ("https://mapped.example:{p4}/", "IPv4-mapped form of 127.0.0.1"),
    ("https://mixed.example:{p4}/", "resolves to 127.0.0.1"),
    # schemes and forms no policy allows
    ("file:///etc/passwd", "scheme 'file'"),
    ("ftp://public.example/", "scheme 'ftp'"),
    ("gopher://127.0.0.1:{p4}/", "scheme 'gopher'"),
    ("http://public.example/", "plain http"),
    (f"http://{PUBLIC}/", "plain http"),
    ("https://public.example:99999/", "out of range"),
    ("https://exa%20mple.example/", "escaped"),
]


@pytest.mark.parametrize(("url", "why"), MATRIX, ids=[u for u, _ in MATRIX])
async def test_refused_urls_reach_nothing(sentinel: Sentinel, url: str, why: str) -> None:
    """Checked twice, as the WEBHOOK step does: the URL text before anything is built (what
    it can tell without resolving), then the request through the guarded client."""
    recorder, names, policy = Recorder(), Names(NAMES), EgressPolicy()
    target = url.format(p4=sentinel.p4, p6=sentinel.p6)
    try:
        policy.check_url(target)
        early: EndpointRefused | None = None
    except EndpointRefused as exc:
        early = exc
    async with guarded_client(policy, resolver=names, backend=recorder) as client:
        # httpx itself rejects a few numeric forms (0177.0.0.1) before the transport.
        with pytest.raises((EndpointRefused, httpx.InvalidURL)) as info:
            await client.post(target, content=b"{}")
    assert early is not None or info.type is EndpointRefused
    message = str(early or info.value)
    assert why in message and "\n" not in message and "pw" not in message
    assert recorder.connects == [], "the guard let a connection attempt through"
    assert sentinel.connections == 0


def test_the_matrix_is_broad() -> None:
    assert len(MATRIX) >= 40


async def test_an_allow_listed_local_receiver_works_and_nothing_else_does(
    sentinel: Sentinel,
) -> None:
    async with Stub(Reply(200, "ok")) as stub:
        policy = EgressPolicy.allowing([stub.url])
        async with guarded_client(policy) as client:
            answer = await client.post(f"{stub.url}/hook", content=b"{}")
            # Allow-listing is per origin: the same host on another port, or by another
            # name, is not covered.
            for other in (
                f"http://127.0.0.1:{sentinel.p4}/",
                f"http://localhost:{stub.url.rsplit(':', 1)[1]}/",
            ):
                with pytest.raises(EndpointRefused):
                    await client.post(other)
    assert answer.status_code == 200 and answer.text == "ok"
    assert [r.path for r in stub.requests] == ["/hook"]
    assert sentinel.connections == 0


async def test_an_allow_listed_name_is_connected_to_its_checked_address_under_its_name() -> None:
    async with Stub() as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        names, recorder = Names({"receiver.internal": [["127.0.0.1"]]}), Recorder()
        policy = EgressPolicy.allowing([f"http://receiver.internal:{port}"])
        async with guarded_client(policy, resolver=names, backend=recorder) as client:
            answer = await client.get(f"http://receiver.internal:{port}/x")
    assert answer.status_code == 200
    assert names.asked == ["receiver.internal"]
    assert recorder.connects == [("127.0.0.1", port)]
    assert stub.requests[0].headers["host"] == f"receiver.internal:{port}"


async def test_dns_rebinding_cannot_swap_the_checked_address(sentinel: Sentinel) -> None:
    """The resolver answers public first, then loopback (where the sentinel listens): the
    connection goes to the public answer, the one that was checked, and the name is never
    resolved again."""
    names = Names({"rebind.example": [[PUBLIC], ["127.0.0.1"]]})
    recorder = Recorder()
    async with guarded_client(EgressPolicy(), resolver=names, backend=recorder) as client:
        with pytest.raises(httpx.ConnectError, match="unreachable in tests"):
            await client.post(f"https://rebind.example:{sentinel.p4}/", content=b"{}")
    assert names.asked == ["rebind.example"]
    assert recorder.connects == [(PUBLIC, sentinel.p4)]
    assert sentinel.connections == 0


async def test_a_name_answering_private_first_is_refused_after_one_question(
    sentinel: Sentinel,
) -> None:
    names = Names({"rebind.example": [["127.0.0.1"], [PUBLIC]]})
    recorder = Recorder()
    async with guarded_client(EgressPolicy(), resolver=names, backend=recorder) as client:
        with pytest.raises(EndpointRefused, match=r"resolves to 127\.0\.0\.1"):
            await client.post(f"https://rebind.example:{sentinel.p4}/")
    assert names.asked == ["rebind.example"] and recorder.connects == []
    assert sentinel.connections == 0


async def test_an_unknown_name_is_a_connection_error_worth_retrying() -> None:
    async with guarded_client(EgressPolicy(), resolver=Names({})) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.example"):
            await client.get("https://nowhere.example/")


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:{p4}/",
        "https://127.0.0.1:{p4}/",
        "http://[::ffff:127.0.0.1]:{p4}/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/admin",
        "https://2130706433:{p4}/",
        "file:///etc/passwd",
    ],
)
async def test_a_redirect_to_a_refused_address_is_refused_even_when_following(
    sentinel: Sentinel, location: str
) -> None:
    """The WEBHOOK step never follows redirects; a client that does still checks each hop."""
    target = location.format(p4=sentinel.p4)
    async with Stub(Reply(302, headers={"Location": target})) as stub:
        policy = EgressPolicy.allowing([stub.url])
        recorder = Recorder()
        client = guarded_client(policy, backend=recorder, follow_redirects=True)
        async with client:
            with pytest.raises(EndpointRefused):
                await client.post(stub.url, content=b"{}")
    assert len(stub.requests) == 1
    port = int(stub.url.rsplit(":", 1)[1])
    assert recorder.connects == [("127.0.0.1", port)]
    assert sentinel.connections == 0


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("https://hooks.example/ship", "not an origin"),
        ("https://hooks.example?x=1", "not an origin"),
        ("http://0x7f.1:8080", "non-canonical"),
        ("http://user@hooks.example", "credentials"),
        ("ftp://hooks.example", "scheme"),
        ("hooks.example", "scheme"),
    ],
)
def test_allow_list_entries_must_be_origins(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        EgressPolicy.allowing([entry])


def test_allow_list_entries_are_normalised() -> None:
    policy = EgressPolicy.allowing(["HTTPS://Hooks.Example.", "http://[0:0::1]:8080/"])
    assert sorted(str(o) for o in policy.allow) == [
        "http://[::1]:8080",
        "https://hooks.example:443",
    ]
    assert policy.allows("hooks.example", 443) and policy.allows("::1", 8080)
    assert not policy.allows("hooks.example", 8443)
