"""What a step handler may know about the run it is part of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadenza.core.ids import RunId

if TYPE_CHECKING:
    from cadenza.graph.config import WorkflowConfiguration

#: Makes a step's logger: ``(level, **bound fields)`` to a structlog logger.
LoggerFactory = Callable[..., Any]


@dataclass(slots=True)
class ExecutionContext:
    """Passed to handlers that take a second argument.

    ``idempotency_key`` is the same for every attempt of the same logical step instance (run,
    step path, loop iteration, map index), so side effects can be de-duplicated downstream:
    a step that was running when its process died runs again with the same key."""

    run_id: RunId
    workflow: str
    step: str
    path: str
    attempt: int
    config: WorkflowConfiguration
    item: Any = None
    index: int | None = None
    #: Makes :attr:`logger` (the runtime passes :func:`cadenza.observe.logging.step_logger`).
    make_logger: LoggerFactory | None = None
    _logger: Any = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.path}"

    @property
    def logger(self) -> Any:
        """A structlog logger bound to this run, step and attempt, writing the lines at the
        workflow's ``log_level`` and above."""
        if self._logger is None:
            if self.make_logger is None:
                raise AttributeError("this context was made without a logger factory")
            self._logger = self.make_logger(
                self.config.log_level,
                run_id=self.run_id,
                workflow=self.workflow,
                step=self.path,
                attempt=self.attempt,
            )
        return self._logger
