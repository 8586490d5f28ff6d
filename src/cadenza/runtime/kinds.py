"""The step kinds an engine executes: one executor per kind, given to the engine.

The runtime knows no step kind itself: the step executors depend on it (they commit through a
:class:`~cadenza.runtime.run.RunExecution`), never the other way round. An engine is given its
:class:`StepKinds` (``Engine(kinds=...)``); one given none takes the default kinds, which
:mod:`cadenza.steps` provides when it is imported (``from cadenza import Engine`` does)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadenza.core.errors import CadenzaError

if TYPE_CHECKING:
    from cadenza.graph.ir import Step, StepKind
    from cadenza.runtime.run import RunExecution
    from cadenza.runtime.scope import Scope

#: Runs one step instance ``(run, step, scope, path)``; returns the successors it routes to
#: (``None``: all of them).
Executor = Callable[["RunExecution", "Step", "Scope", str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class StepKinds:
    """The executor of each step kind, and what to call when an engine closes (to release
    what the executors share between runs, such as HTTP connection pools)."""

    executors: Mapping[StepKind, Executor]
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()

    def __contains__(self, kind: object) -> bool:
        return kind in self.executors


_default: StepKinds | None = None


def provide_default(kinds: StepKinds) -> None:
    """Make ``kinds`` what an engine given no kinds executes."""
    global _default
    _default = kinds


def default_kinds() -> StepKinds:
    """The default step kinds (see :func:`provide_default`)."""
    if _default is None:
        raise CadenzaError(
            "this engine was given no step kinds and none are provided: create it with "
            "'from cadenza import Engine' (Cadenza's own step kinds), import cadenza.steps "
            "first, or pass Engine(kinds=...)"
        )
    return _default
