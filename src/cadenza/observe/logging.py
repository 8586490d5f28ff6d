"""Structured logs from the event stream: JSON lines when not on a terminal, readable lines
on one. Each line carries the run id, workflow, step and attempt."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from cadenza.core.events import Event, EventType

_LEVELS = {
    EventType.STATUS: logging.INFO,
    EventType.STEP_FAILED: logging.WARNING,
    EventType.RUN_CREATED: logging.INFO,
    EventType.REFUSED: logging.INFO,  # a failed authorisation, for the operator to see
    EventType.APPROVAL_REFUSED: logging.INFO,
}


def configure_logging(
    level: str | int = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog for Cadenza: ``json=None`` picks JSON unless ``stream`` is a TTY."""
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    # psycopg's pool warns about every broken or refused connection of an outage; the engine
    # reports the outage once (``store_unavailable``, ``store_available_again``).
    logging.getLogger("psycopg").setLevel(logging.ERROR if level > logging.DEBUG else level)
    target: Any = stream if stream is not None else _CurrentStderr()
    tty = target.isatty()
    if json is None:
        json = not tty
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=tty)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(target),
        cache_logger_on_first_use=False,
    )


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be replaced after setup, as
    test runners and embedding applications do)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class LoggingObserver:
    """Logs every event: run status changes at INFO, failures at WARNING, steps at DEBUG."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger or structlog.get_logger("cadenza.run")

    def on_event(self, event: Event, *, workflow: str, **future: Any) -> None:
        level = _LEVELS.get(event.type, logging.DEBUG)
        fields: dict[str, Any] = {"run_id": event.run_id, "workflow": workflow, "seq": event.seq}
        if event.path:
            fields["step"] = event.path
        if event.attempt:
            fields["attempt"] = event.attempt
        data = event.data
        if event.type is EventType.STATUS:
            fields["status"] = data.get("to")
            if data.get("reason"):
                fields["reason"] = data["reason"]
        elif event.type is EventType.STEP_FAILED:
            fields.update(
                error=data.get("error"), error_type=data.get("error_type"), retry=data.get("retry")
            )
        elif event.type in (EventType.REFUSED, EventType.APPROVAL_REFUSED):
            fields.update(actor=data.get("actor"), reason=data.get("reason"))
        elif event.type is EventType.STEP_COMPLETED and "route" in data:
            fields["route"] = data["route"]
        self._log.log(level, str(event.type), **fields)


def step_logger(level: str, **bound: Any) -> Any:
    """The logger a step writes its own lines with (``ctx.logger``), bound to ``bound``,
    dropping lines below ``level``: the workflow's ``log_level``. The process's configuration
    (:func:`configure_logging`, ``--log-level``) still filters what passes, as a handler's
    level does after a logger's in :mod:`logging`; a workflow can quiet its own chatter, not
    make a quiet process talk."""
    logger = structlog.get_logger("cadenza.step").bind(**bound)
    floor = logging.getLevelNamesMapping()[level.upper()]
    return logger if floor <= logging.DEBUG else _AtLeast(logger, floor)


#: Bound-logger methods that write a line, and the level each writes at.
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "err": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
#: Their ``async`` forms (``await log.ainfo(...)``).
_ASYNC_LEVELS = {f"a{name}": level for name, level in _METHOD_LEVELS.items()}


class _AtLeast:
    """A bound logger that drops the lines below ``floor`` and passes everything else on,
    whatever structlog's configuration (a wrapper over it, not one of its filtering classes,
    so that a user's own structlog setup keeps working)."""

    __slots__ = ("_floor", "_logger")

    def __init__(self, logger: Any, floor: int) -> None:
        self._logger = logger
        self._floor = floor

    def bind(self, **values: Any) -> _AtLeast:
        return _AtLeast(self._logger.bind(**values), self._floor)

    def unbind(self, *keys: str) -> _AtLeast:
        return _AtLeast(self._logger.unbind(*keys), self._floor)

    def try_unbind(self, *keys: str) -> _AtLeast:
        return _AtLeast(self._logger.try_unbind(*keys), self._floor)

    def new(self, **values: Any) -> _AtLeast:
        return _AtLeast(self._logger.new(**values), self._floor)

    def log(self, level: int, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if level < self._floor:
            return None
        return self._logger.log(level, event, *args, **kw)

    async def alog(self, level: int, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if level < self._floor:
            return None
        return await self._logger.alog(level, event, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._logger, name)
        if name in _METHOD_LEVELS and _METHOD_LEVELS[name] < self._floor:
            return _dropped
        if name in _ASYNC_LEVELS and _ASYNC_LEVELS[name] < self._floor:
            return _dropped_async
        return method


def _dropped(*args: Any, **kw: Any) -> None:
    return None


async def _dropped_async(*args: Any, **kw: Any) -> None:
    return None
