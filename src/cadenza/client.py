"""A Python client of ``cadenza serve``'s API: :class:`Client` (blocking) and
:class:`AsyncClient`, over httpx, with the same methods.

```python
from cadenza.client import Client

with Client("http://127.0.0.1:8000", api_key="cdz_...") as api:
    run = api.start("orders", {"amount": 12.5}, idempotency_key="order-1234")
    for event in api.stream(run["run_id"]):
        print(event["type"])
```

Answers are the API's JSON documents (dicts); an error answer raises :class:`ApiError` with
its problem document. ``stream`` yields the run's events as they commit and resumes by itself
after a dropped connection, from the last event it yielded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from cadenza.core.errors import CadenzaError

__all__ = ["ApiError", "AsyncClient", "Client"]

_TIMEOUT = httpx.Timeout(30.0, read=None)
#: Reconnections of a stream in a row that deliver nothing before it gives up.
_RECONNECTS = 5


class ApiError(CadenzaError):
    """An error answer: ``status`` and the problem document (``problem["detail"]`` says why,
    ``problem.get("errors")`` the JSON paths of invalid input)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title') or ''}")


def _check(answer: httpx.Response) -> Any:
    if answer.status_code >= 400 or answer.status_code == 202:
        try:
            problem = answer.json()
        except ValueError:
            problem = {"detail": answer.text[:500]}
        raise ApiError(answer.status_code, problem if isinstance(problem, dict) else {})
    if answer.headers.get("content-type", "").startswith("application/json"):
        return answer.json()
    return answer.text


def _run(run_id: str) -> str:
    return f"/v1/runs/{quote(run_id, safe='')}"


class _Calls:
    """The requests of the API's methods, shared by both clients."""

    @staticmethod
    def start(
        workflow: str,
        input: Mapping[str, Any] | None,
        idempotency_key: str | None,
        queue: str,
        version: str | None,
    ) -> tuple[str, str, dict[str, Any]]:
        body: dict[str, Any] = {"input": dict(input or {}), "queue": queue}
        if version is not None:
            body["version"] = version
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        path = f"/v1/workflows/{quote(workflow, safe='')}/runs"
        return "POST", path, {"json": body, "headers": headers}

    @staticmethod
    def runs(
        workflow: str | None,
        status: Sequence[str] | None,
        parent: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[str, str, dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("workflow", workflow), ("parent", parent), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        if status:
            params["status"] = list(status)
        return "GET", "/v1/runs", {"params": params}


def _http_args(url: str, credential: str | None, httpx_args: dict[str, Any]) -> dict[str, Any]:
    """What both clients give httpx: the base URL, the credential, a default timeout."""
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return {"base_url": url, "headers": headers, "timeout": _TIMEOUT, **httpx_args}


class Client:
    """A blocking client; use it as a context manager (or call :meth:`close`)."""

    def __init__(
        self, url: str, *, api_key: str | None = None, token: str | None = None, **httpx_args: Any
    ) -> None:
        self.http = httpx.Client(**_http_args(url, api_key or token, httpx_args))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        return _check(self.http.request(method, path, **kw))

    def workflows(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/workflows")
        return result

    def workflow(self, name: str, part: str = "") -> dict[str, Any]:
        """A workflow, or ``part`` of it: ``definition``, ``graph`` or ``versions``."""
        path = f"/v1/workflows/{quote(name, safe='')}" + (f"/{part}" if part else "")
        result: dict[str, Any] = self._call("GET", path)
        return result

    def start(
        self,
        workflow: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str = "default",
        version: str | None = None,
    ) -> dict[str, Any]:
        method, path, kw = _Calls.start(workflow, input, idempotency_key, queue, version)
        result: dict[str, Any] = self._call(method, path, **kw)
        return result

    def runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] | None = None,
        parent: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        method, path, kw = _Calls.runs(workflow, status, parent, cursor, limit)
        result: dict[str, Any] = self._call(method, path, **kw)
        return result

    def run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _run(run_id))
        return result

    def events(self, run_id: str, *, after_seq: int = 0, limit: int = 100) -> dict[str, Any]:
        params = {"after_seq": after_seq, "limit": limit}
        result: dict[str, Any] = self._call("GET", f"{_run(run_id)}/events", params=params)
        return result

    def state(self, run_id: str, seq: int | None = None) -> dict[str, Any]:
        params = {} if seq is None else {"seq": seq}
        result: dict[str, Any] = self._call("GET", f"{_run(run_id)}/state", params=params)
        return result

    def command(self, run_id: str, command: str, body: Mapping[str, Any] | None = None) -> Any:
        """``cancel``, ``pause``, ``unpause``, ``retry``, ``fork`` or ``signals``."""
        return self._call("POST", f"{_run(run_id)}/{command}", json=dict(body or {}))

    def signal(self, run_id: str, name: str, payload: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self.command(run_id, "signals", {"name": name, "payload": payload})
        return result

    def approvals(self, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        result: dict[str, Any] = self._call("GET", "/v1/approvals", params=params)
        return result

    def decide(self, run_id: str, step: str, *, approve: bool, comment: str = "") -> Any:
        body = {"approve": approve, "comment": comment}
        return self._call("POST", f"{_run(run_id)}/approvals/{quote(step)}", json=body)

    def verify(self, run_id: str | None = None) -> dict[str, Any]:
        params = {"run_id": run_id} if run_id else {}
        result: dict[str, Any] = self._call("GET", "/v1/audit/verify", params=params)
        return result

    def stream(self, run_id: str, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """The run's events from ``after_seq`` on, as they commit, until the run ends."""
        last, failures = after_seq, 0
        while True:
            headers = {"Last-Event-ID": str(last)}
            try:
                with self.http.stream("GET", f"{_run(run_id)}/stream", headers=headers) as s:
                    if s.status_code != 200:
                        s.read()
                        _check(s)
                    for name, data in _events(s.iter_lines()):
                        if name in ("end", "expired"):
                            if name == "end":
                                return
                            break
                        last, failures = int(data["seq"]), 0
                        yield data
            except httpx.TransportError:
                failures += 1  # dropped: resume after the last event yielded
                if failures > _RECONNECTS:
                    raise


class AsyncClient:
    """:class:`Client` for asyncio code (``async with``, ``await``, ``async for``)."""

    def __init__(
        self, url: str, *, api_key: str | None = None, token: str | None = None, **httpx_args: Any
    ) -> None:
        self.http = httpx.AsyncClient(**_http_args(url, api_key or token, httpx_args))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return _check(await self.http.request(method, path, **kw))

    async def workflows(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/v1/workflows")
        return result

    async def workflow(self, name: str, part: str = "") -> dict[str, Any]:
        path = f"/v1/workflows/{quote(name, safe='')}" + (f"/{part}" if part else "")
        result: dict[str, Any] = await self._call("GET", path)
        return result

    async def start(
        self,
        workflow: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str = "default",
        version: str | None = None,
    ) -> dict[str, Any]:
        method, path, kw = _Calls.start(workflow, input, idempotency_key, queue, version)
        result: dict[str, Any] = await self._call(method, path, **kw)
        return result

    async def runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] | None = None,
        parent: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        method, path, kw = _Calls.runs(workflow, status, parent, cursor, limit)
        result: dict[str, Any] = await self._call(method, path, **kw)
        return result

    async def run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", _run(run_id))
        return result

    async def events(self, run_id: str, *, after_seq: int = 0, limit: int = 100) -> dict[str, Any]:
        params = {"after_seq": after_seq, "limit": limit}
        result: dict[str, Any] = await self._call("GET", f"{_run(run_id)}/events", params=params)
        return result

    async def state(self, run_id: str, seq: int | None = None) -> dict[str, Any]:
        params = {} if seq is None else {"seq": seq}
        result: dict[str, Any] = await self._call("GET", f"{_run(run_id)}/state", params=params)
        return result

    async def command(
        self, run_id: str, command: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        return await self._call("POST", f"{_run(run_id)}/{command}", json=dict(body or {}))

    async def signal(self, run_id: str, name: str, payload: Any = None) -> dict[str, Any]:
        body = {"name": name, "payload": payload}
        result: dict[str, Any] = await self.command(run_id, "signals", body)
        return result

    async def approvals(self, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        result: dict[str, Any] = await self._call("GET", "/v1/approvals", params=params)
        return result

    async def decide(self, run_id: str, step: str, *, approve: bool, comment: str = "") -> Any:
        body = {"approve": approve, "comment": comment}
        return await self._call("POST", f"{_run(run_id)}/approvals/{quote(step)}", json=body)

    async def verify(self, run_id: str | None = None) -> dict[str, Any]:
        params = {"run_id": run_id} if run_id else {}
        result: dict[str, Any] = await self._call("GET", "/v1/audit/verify", params=params)
        return result

    async def stream(self, run_id: str, *, after_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        last, failures = after_seq, 0
        while True:
            headers = {"Last-Event-ID": str(last)}
            try:
                async with self.http.stream("GET", f"{_run(run_id)}/stream", headers=headers) as s:
                    if s.status_code != 200:
                        await s.aread()
                        _check(s)
                    async for name, data in _aevents(s.aiter_lines()):
                        if name in ("end", "expired"):
                            if name == "end":
                                return
                            break
                        last, failures = int(data["seq"]), 0
                        yield data
            except httpx.TransportError:
                failures += 1
                if failures > _RECONNECTS:
                    raise


def _parse(lines: list[str]) -> tuple[str, Any] | None:
    name, data = "message", None
    for line in lines:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data = json.loads(value)
    return (name, data) if data is not None else None


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    block: list[str] = []
    for line in lines:
        if line:
            if not line.startswith(":"):
                block.append(line)
            continue
        parsed = _parse(block)
        block = []
        if parsed is not None:
            yield parsed


async def _aevents(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, Any]]:
    block: list[str] = []
    async for line in lines:
        if line:
            if not line.startswith(":"):
                block.append(line)
            continue
        parsed = _parse(block)
        block = []
        if parsed is not None:
            yield parsed
