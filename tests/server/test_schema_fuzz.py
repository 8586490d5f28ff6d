"""The whole API fuzzed from its own OpenAPI document with schemathesis (every check), against
a server on a loopback socket: authenticated as an admin, no answer is a 5xx or strays from
the document; without credentials, every operation is a 401. (The all-runs stream never ends
by design, so it is left out.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra brings schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from cadenza.server.service import Server  # noqa: E402
from tests.server.fixtures import catalog, config, listening  # noqa: E402

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
ENDLESS = "/v1/events/stream"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server in a thread of its own (its own event loop), with an admin's key and a run
    of each kind, so that the fuzzer finds real ids too."""
    folder: Path = tmp_path_factory.mktemp("fuzz")
    server = Server(folder / "f.db", config=config(), catalog=catalog(), poll_interval=0.05)
    box: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with listening(server) as (api, url):
                root = await api.key("root")
                for workflow in ("orders", "gated"):
                    await api.start(root, workflow, input={"amount": 1})
                box.update(url=url, headers=root)
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.01)

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(60)
        yield box
    finally:
        stop.set()
        thread.join()


@pytest.fixture(scope="module")
def api_schema(live: dict[str, Any]) -> Any:
    loaded = schemathesis.openapi.from_url(f"{live['url']}/openapi.json")
    return loaded.exclude(path=ENDLESS)


def _operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def _fuzz(api_schema: Any, check: Any) -> None:
    """Run ``check`` on cases of every operation; fail listing every operation that failed.
    (Schemathesis's own pytest plugin does not run on this pytest, hence the loop.)"""
    failed = []
    for operation in _operations(api_schema):

        @given(case=operation.as_strategy())
        @SETTINGS
        def one(case: Any) -> None:
            check(case)

        try:
            one()
        except Exception as exc:  # every operation is fuzzed; failures are listed together
            failed.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failed, "\n\n".join(failed)


def test_authenticated(api_schema: Any, live: dict[str, Any]) -> None:
    assert len(_operations(api_schema)) >= 25
    _fuzz(
        api_schema,
        lambda case: case.call_and_validate(
            base_url=live["url"], headers=live["headers"], timeout=30
        ),
    )


def test_unauthenticated(api_schema: Any, live: dict[str, Any]) -> None:
    def check(case: Any) -> None:
        answer = case.call(base_url=live["url"], timeout=30)
        if case.path in ("/healthz", "/readyz"):
            assert answer.status_code == 200
        else:
            assert answer.status_code == 401, (case.method, case.path, answer.text)

    _fuzz(api_schema, check)
