"""Local HTTP servers that speak OpenAI's ``/v1/chat/completions`` and Anthropic's
``/v1/messages`` protocols, for testing the model adapters through the real SDKs.

Each server answers with scripted replies built here in the APIs' own response layout (ids,
``usage``, finish/stop reasons, tool calls, and the error bodies sent with 4xx/5xx statuses),
and records every request it receives, so that tests check what the SDK actually sent.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

_ids = itertools.count(1)
_PHRASES = {529: "Site Overloaded"}  # Anthropic's overload status, not in HTTPStatus


@dataclass
class Reply:
    """One scripted answer. ``hang`` holds the request open until the server stops (so a
    client's timeout fires whatever the machine's speed)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ProtocolServer:
    """A threaded HTTP server on 127.0.0.1 for one endpoint: answers each request with the
    next scripted reply and records it. An unscripted request gets a 500 whose message says
    so, which the tests then see as a failure."""

    def __init__(self, endpoint: str, error: Any) -> None:
        self.endpoint = endpoint
        self.requests: list[Recorded] = []
        self._replies: list[Reply] = []
        self._error = error
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def reply(self, *replies: Reply) -> None:
        """Queue replies, answered in order."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def last(self) -> Any:
        """The JSON body of the last request received."""
        assert self.requests, "the server received no request"
        return self.requests[-1].body

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def _next(self, method: str, path: str, headers: dict[str, str], body: Any) -> Reply:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if path.split("?")[0] != self.endpoint:
                return self._error(404, f"no route {method} {path} on this test server")
            if not self._replies:
                return self._error(500, "the test server has no reply scripted for this request")
            return self._replies.pop(0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._next("POST", self.path, headers, body)
                if reply.hang:
                    server._stopping.wait()
                    return
                data = json.dumps(reply.body).encode()
                phrase = _PHRASES.get(reply.status) or HTTPStatus(reply.status).phrase
                self.send_response(reply.status, phrase)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def openai_server() -> Iterator[ProtocolServer]:
    server = ProtocolServer(OPENAI_PATH, openai_error)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def anthropic_server() -> Iterator[ProtocolServer]:
    server = ProtocolServer(ANTHROPIC_PATH, anthropic_error)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- OpenAI chat completions ------------------------------------------------------------------


def openai_tool_call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """A tool call as it appears in ``choices[].message.tool_calls`` (arguments are JSON text,
    passed through verbatim when given as a string)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def openai_completion(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    model: str = "gpt-4o-mini-2024-07-18",
    prompt_tokens: int = 19,
    completion_tokens: int = 10,
    refusal: str | None = None,
) -> Reply:
    """A ``chat.completion`` object as OpenAI returns it."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": refusal,
        "annotations": [],
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    reason = finish_reason or ("tool_calls" if tool_calls else "stop")
    body = {
        "id": f"chatcmpl-test{next(_ids):08d}",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }
    return Reply(body=body, headers={"x-request-id": f"req_{next(_ids):08d}"})


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def openai_error(status: int, message: str, *, param: str | None = None) -> Reply:
    """An error as OpenAI sends it: ``{"error": {message, type, param, code}}``."""
    kind, code = _OPENAI_ERRORS.get(status, ("server_error", None))
    headers = {"retry-after": "20"} if status == 429 else {}
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply(status=status, body=body, headers=headers)


# --- Anthropic messages -----------------------------------------------------------------------


def anthropic_text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def anthropic_tool_use(block_id: str, name: str, tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


def anthropic_message(
    *content: dict[str, Any],
    stop_reason: str | None = None,
    model: str = "claude-3-5-haiku-20241022",
    input_tokens: int = 25,
    output_tokens: int = 12,
    cache_read_input_tokens: int = 0,
) -> Reply:
    """A ``message`` object as the messages API returns it."""
    uses_tool = any(block["type"] == "tool_use" for block in content)
    body = {
        "id": f"msg_01Test{next(_ids):08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": list(content),
        "stop_reason": stop_reason or ("tool_use" if uses_tool else "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read_input_tokens,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        },
    }
    return Reply(body=body, headers={"request-id": f"req_01Test{next(_ids):08d}"})


_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> Reply:
    """An error as Anthropic sends it: ``{"type": "error", "error": {type, message}}``."""
    body = {
        "type": "error",
        "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"), "message": message},
        "request_id": f"req_01Test{next(_ids):08d}",
    }
    headers = {"retry-after": "20"} if status == 429 else {}
    return Reply(status=status, body=body, headers=headers)
