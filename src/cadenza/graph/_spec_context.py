"""What compiling one workflow file shares between its parts (the workflow-level settings,
the steps, the agent steps): the spec, where each step is in the file, how references
resolve, and the problems found so far, each located in the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_refs import References
from cadenza.graph.spec import StepSpec, WorkflowSpec
from cadenza.graph.spec_load import Loc, Locator, Problem, SpecError
from cadenza.resilience.retry import RetryPolicy


class Reported(Exception):
    """A problem already recorded with its location; stop building this step."""


def stop() -> NoReturn:
    """Stop building the current step (its problem is recorded)."""
    raise Reported


class SpecContext:
    """One workflow file being compiled: ``spec`` read from ``file`` (``locator`` finds
    places in it), its references resolved through ``refs``."""

    def __init__(self, spec: WorkflowSpec, locator: Locator, file: str, refs: References):
        self.spec = spec
        self.locator = locator
        self.file = file
        self.refs = refs
        self.problems: list[Problem] = []
        self.where: dict[str, Loc] = {}  # step name -> its place in the file

    def problem(self, path: Loc, message: str) -> None:
        self.problems.append(self.locator.problem(path, message))

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecError(self.file, self.problems)

    def ref(self, ref: str | None, path: Loc) -> Callable[..., Any] | None:
        """The handler ``ref`` names (``None``: none named, or a problem recorded at
        ``path``)."""
        if ref is None:
            return None
        try:
            return self.refs.handler(ref)
        except DefinitionError as exc:
            self.problem(path, exc.message)
            return None

    @staticmethod
    def retry(step: StepSpec) -> RetryPolicy | None:
        """The step's retry policy, as the file declares it."""
        if isinstance(step.retry, int):
            return RetryPolicy(max_attempts=step.retry + 1)
        if step.retry is not None:
            return RetryPolicy(**step.retry.model_dump())
        return None

    def locate_definition_error(self, exc: DefinitionError) -> Problem:
        """The place in the file of a problem the builder found (its message in the file's
        terms)."""
        parts = exc.path.split(".") if exc.path else []
        name = parts[1].split("[", 1)[0] if len(parts) > 1 and parts[0] == "steps" else None
        where = self.where.get(name or "", ())
        message = exc.message.replace(
            "repeat work with a loop step (wf.loop(..., max_iterations=N))",
            "repeat work with a LOOP step (with max_iterations)",
        ).replace(
            "with wf.edge(...) or wf.chain(...), or name every first step with wf.start(...)",
            "with 'next'",
        )
        return self.locator.problem(where, message)
