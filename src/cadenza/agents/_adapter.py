"""What every vendor adapter shares: importing an optional SDK, naming and validating a
structured output, decoding tool-call arguments, mapping SDK errors to ``ModelError``, and one
vocabulary of stop reasons.

Stop reasons are normalised so that steps need not know the vendor: ``"stop"`` (the model
finished, including at a stop sequence), ``"tool_calls"``, ``"max_tokens"``,
``"content_filter"`` and ``"refusal"``; any other value is passed through verbatim.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from cadenza.agents.model import Message, ModelError, ModelResponse, OutputSchema, ToolSpec

INSTALL_HINT = "pip install 'cadenza[llm]'"

_STOP_REASONS = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "content_filter": "content_filter",
    "refusal": "refusal",
}


def import_sdk(module: str, *, package: str, needed_by: str) -> ModuleType:
    """Import an optional dependency, or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{needed_by} needs the {package!r} package, which is not installed: {INSTALL_HINT}"
        ) from exc


def stop_reason(raw: str | None) -> str | None:
    """The vendor's finish/stop reason in the shared vocabulary (see the module docstring)."""
    if raw is None:
        return None
    return _STOP_REASONS.get(raw, raw)


def retryable_status(status: int) -> bool:
    """Whether an HTTP status may succeed on another attempt: the statuses the vendors' own
    SDKs retry (timeout, lock conflict, rate limit, server errors and overload)."""
    return status in (408, 409, 429) or status >= 500


def decode_arguments(raw: str | None, *, tool: str, where: str) -> dict[str, Any]:
    """Tool-call arguments from the JSON text a model wrote; an empty text means no arguments."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{where}: the arguments of the call to tool {tool!r} are not valid JSON "
            f"({exc.msg} at character {exc.pos}): {raw!r}"
        ) from exc
    if not isinstance(value, dict):
        raise ModelError(
            f"{where}: the arguments of the call to tool {tool!r} are not a JSON object: {raw!r}"
        )
    return value


@dataclass(frozen=True)
class OutputFormat:
    """A structured output asked for, in the form adapters send: a name the vendors accept
    (``[A-Za-z0-9_-]{1,64}``), a JSON schema, and the pydantic model to validate with (if any)."""

    name: str
    schema: dict[str, Any]
    description: str
    model: type[BaseModel] | None


def output_format(output: OutputSchema) -> OutputFormat:
    """Check what the caller asked for and give it a name and a schema."""
    if isinstance(output, type) and issubclass(output, BaseModel):
        schema = output.model_json_schema()
        return OutputFormat(
            name=_safe_name(output.__name__),
            schema=schema,
            description=str(schema.get("description", "")),
            model=output,
        )
    if isinstance(output, Mapping):
        schema = dict(output)
        validator_class = _jsonschema().validators.validator_for(schema)
        try:
            validator_class.check_schema(schema)
        except _jsonschema().SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise ValueError(
                f"output is not a valid JSON schema at {where}: {exc.message}"
            ) from exc
        return OutputFormat(
            name=_safe_name(str(schema.get("title") or "output")),
            schema=schema,
            description=str(schema.get("description", "")),
            model=None,
        )
    raise TypeError(
        f"output must be a pydantic model class or a JSON schema dict, not {type(output).__name__}"
    )


def validate_output(fmt: OutputFormat, data: Any, *, where: str, stop: str | None = None) -> Any:
    """The structured output as the caller asked for it (a model instance or the checked
    data), or a ModelError saying where the reply departs from the schema."""
    cut = " (the reply was cut off by max_tokens)" if stop == "max_tokens" else ""
    if fmt.model is not None:
        if isinstance(data, fmt.model):
            return data
        try:
            return fmt.model.model_validate(data)
        except ValidationError as exc:
            raise ModelError(
                f"{where}: the reply does not match {fmt.name}{cut}: {validation_problems(exc)}"
            ) from exc
    jsonschema = _jsonschema()
    validator = jsonschema.validators.validator_for(fmt.schema)(fmt.schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ModelError(
            f"{where}: the reply does not match the output schema {fmt.name!r}{cut} "
            f"at {at}: {error.message}"
        )
    return data


def validation_problems(exc: ValidationError) -> str:
    """A pydantic validation error on one line: ``field.path: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


def parse_output_text(fmt: OutputFormat, text: str, *, where: str, stop: str | None = None) -> Any:
    """Parse a JSON reply and validate it against the output asked for."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (the reply was cut off by max_tokens)" if stop == "max_tokens" else ""
        raise ModelError(
            f"{where}: expected a JSON reply matching {fmt.name!r}{cut}, got {text[:500]!r}"
        ) from exc
    return validate_output(fmt, data, where=where, stop=stop)


def to_model_error(exc: BaseException, *, where: str) -> ModelError:
    """Map an SDK's exception to ModelError, retryable where another attempt may help."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        detail = _error_detail(getattr(exc, "body", None)) or getattr(exc, "message", str(exc))
        return ModelError(f"{where}: HTTP {status}: {detail}", retryable=retryable_status(status))
    if isinstance(exc, _timeout_types()):
        return ModelError(f"{where}: the request timed out ({exc})", retryable=True)
    if isinstance(exc, _connection_types()):
        return ModelError(f"{where}: could not connect ({exc})", retryable=True)
    return ModelError(f"{where}: {type(exc).__name__}: {exc}")


def _error_detail(body: object) -> str:
    """``type: message`` from an OpenAI- or Anthropic-style error body."""
    if not isinstance(body, Mapping):
        return ""
    error = body.get("error", body)
    if not isinstance(error, Mapping):
        return str(error)
    message = str(error.get("message") or "")
    kind = error.get("type") or error.get("code")
    return f"{kind}: {message}" if kind and message else message


def _timeout_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [TimeoutError]
    for module in ("openai", "anthropic", "httpx", "httpx2"):
        loaded = sys.modules.get(module)
        for attr in ("APITimeoutError", "TimeoutException"):
            kind = getattr(loaded, attr, None)
            if isinstance(kind, type) and issubclass(kind, BaseException):
                found.append(kind)
    return tuple(found)


def _connection_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError]
    for module in ("openai", "anthropic", "httpx", "httpx2"):
        loaded = sys.modules.get(module)
        for attr in ("APIConnectionError", "TransportError"):
            kind = getattr(loaded, attr, None)
            if isinstance(kind, type) and issubclass(kind, BaseException):
                found.append(kind)
    return tuple(found)


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]
    return cleaned or "output"


def _jsonschema() -> Any:
    return import_sdk("jsonschema", package="jsonschema", needed_by="a JSON-schema output")


def make_client(
    factory: Callable[..., Any],
    error: type[Exception],
    what: str,
    *,
    timeout: float | None,
    **options: Any,
) -> Any:
    """An SDK client, with the SDK's refusal to build one (a missing API key, say) as a
    ModelError that names the model."""
    if timeout is not None:
        options["timeout"] = timeout
    try:
        return factory(**options)
    except error as exc:
        raise ModelError(f"{what}: {exc}") from exc


class SdkModel(ABC):
    """What the adapters over a provider's SDK share: ``chat`` builds the request, makes the
    SDK call (``_send``), turns the SDK's errors (``_error``, its base class) into
    ModelErrors naming the model and endpoint, and reads the reply (``_response``)."""

    name: str
    client: Any
    _error: type[Exception]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, base_url={str(self.client.base_url)!r})"

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSpec] = (),
        output: OutputSchema | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        fmt = output_format(output) if output is not None else None
        request = self._request(messages, tools, fmt, temperature, max_tokens)
        try:
            reply = await self._send(request)
        except self._error as exc:
            raise to_model_error(exc, where=self._where) from exc
        return self._response(reply, fmt)

    @property
    def _where(self) -> str:
        return f"{self.name} at {self.client.base_url}"

    @abstractmethod
    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        fmt: OutputFormat | None,
        temperature: float | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        """The SDK call's keyword arguments."""

    @abstractmethod
    async def _send(self, request: dict[str, Any]) -> Any:
        """Make the SDK call."""

    @abstractmethod
    def _response(self, reply: Any, fmt: OutputFormat | None) -> ModelResponse:
        """The reply as a ModelResponse."""
