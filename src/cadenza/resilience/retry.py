"""Retry policies: how many attempts a step gets, how long to wait between them, and which
errors are worth another attempt.

The wait is durable: the time of the next attempt is in the log, so a run whose process dies
during a backoff resumes the wait (what is left of it), not the count."""

from __future__ import annotations

import random
from dataclasses import dataclass

from cadenza.core.errors import CadenzaError, DefinitionError


class NonRetryableError(Exception):
    """Raise (or subclass) this from a step to fail it at once, whatever its retry policy."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first try (1 = no retries). The wait before attempt ``n+1``
    is ``initial_delay * backoff**(n-1)``, capped at ``max_delay``, then spread by up to
    ``jitter`` (a fraction) either way so that many runs failing together do not retry in
    lockstep."""

    max_attempts: int = 1
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.max_attempts, int) and self.max_attempts >= 1, "max_attempts", ">= 1"),
            (self.initial_delay >= 0, "initial_delay", ">= 0"),
            (self.backoff >= 1, "backoff", ">= 1"),
            (self.max_delay >= 0, "max_delay", ">= 0"),
            (0 <= self.jitter <= 1, "jitter", "between 0 and 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                value = getattr(self, name)
                raise DefinitionError(f"must be {rule}, got {value!r}", path=f"retry.{name}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        base = min(self.initial_delay * self.backoff ** (attempt - 1), self.max_delay)
        if self.jitter and base:
            base *= 1 + self.jitter * (2 * (rng or random).random() - 1)
        return base

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` gets another: attempts are left, and the error is
        of a retried type (errors Cadenza raises about the step itself never are)."""
        if attempt >= self.max_attempts:
            return False
        if isinstance(error, (NonRetryableError, CadenzaError, *self.never_retry)):
            return False
        return isinstance(error, self.retry_on)

    def describe(self) -> list[object]:
        return [
            self.max_attempts,
            self.initial_delay,
            self.backoff,
            self.max_delay,
            self.jitter,
            [t.__qualname__ for t in self.retry_on],
            [t.__qualname__ for t in self.never_retry],
        ]


NO_RETRY = RetryPolicy()
