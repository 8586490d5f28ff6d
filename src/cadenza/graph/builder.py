"""The Python builder: decorated step functions and a few verbs (``task``, ``parallel``,
``map``, ``conditional``, ``loop``, ``wait``, ``edge``/``chain``) that compile to the IR.

When a workflow declares no edges, no conditional and no start, its steps run in declaration
order. Every verb adds to the workflow's :class:`~cadenza.graph._draft.Draft`, the one place
its definition is kept until it is compiled; the verbs of the other step kinds come from
:class:`~cadenza.graph.builder_kinds.KindVerbs` and
:class:`~cadenza.graph._builder_agents.AgentVerbs`, which touch nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any, TypeVar, overload

from cadenza.core.errors import DefinitionError
from cadenza.core.state import StateSchema
from cadenza.graph._builder_agents import AgentVerbs
from cadenza.graph._builder_args import StepRef
from cadenza.graph._draft import START, Draft, task_step
from cadenza.graph.builder_kinds import KindVerbs
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.ir import Step, WorkflowIR
from cadenza.graph.validate import validate_workflow
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["START", "StepRef", "Workflow"]


class Workflow(KindVerbs, AgentVerbs):
    """A workflow under construction. ``compile()`` validates it and returns the IR; the engine
    compiles on first use, so most code never calls it."""

    def __init__(
        self,
        name: str,
        *,
        state: Any = dict,
        config: WorkflowConfiguration | Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        if not name or not isinstance(name, str):
            raise DefinitionError("a workflow needs a non-empty name", path="name")
        self.name = name
        self.description = description
        if config is None:
            config = WorkflowConfiguration()
        elif isinstance(config, Mapping):
            config = WorkflowConfiguration(**config)
        self.config: WorkflowConfiguration = config
        self._draft = Draft(name, state)
        self._compiled: tuple[int, WorkflowIR] | None = None  # (draft version, IR)

    @property
    def draft(self) -> Draft:
        """The definition declared so far (what the verbs add to)."""
        return self._draft

    @property
    def state_type(self) -> Any:
        return self._draft.state_type

    # -- steps -----------------------------------------------------------------------------

    @overload
    def step(self, fn: F) -> F: ...
    @overload
    def step(self, fn: None = None, **options: Any) -> Callable[[F], F]: ...

    def step(self, fn: F | None = None, **options: Any) -> F | Callable[[F], F]:
        """Decorator form of :meth:`task`: ``@wf.step`` or ``@wf.step(timeout=5, retries=2)``."""

        def register(f: F) -> F:
            self.task(f, **options)
            return f

        return register(fn) if fn is not None else register

    def task(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float = 0.0,
        retry: RetryPolicy | None = None,
        compensate: Callable[..., Any] | None = None,
        bulkhead: Bulkhead | None = None,
        breaker: str | None = None,
        fallback: Callable[..., Any] | None = None,
        when: str | Callable[..., Any] | Sequence[str | Callable[..., Any]] | None = None,
        match: str = "any",
        writes: Iterable[str] | None = None,
        inline: bool = False,
    ) -> str:
        """Add a SEQUENTIAL step calling ``fn(state[, ctx])``, which returns an update (a dict
        of the keys it changes) or ``None``. Sync functions run in a thread pool unless
        ``inline`` (for functions that never block). ``retries``/``retry_delay`` are shorthand
        for ``retry=RetryPolicy(max_attempts=retries + 1, initial_delay=retry_delay)``.
        ``compensate(state[, ctx])`` undoes the step's effect if the run fails later (saga).
        ``bulkhead`` shares a concurrency limit with every step (of any run) naming it.
        ``breaker`` names the circuit breaker of the dependency the step calls (configured
        with ``Engine(breakers={name: BreakerConfig(...)})``); while it is open the step fails
        fast, or returns ``fallback(state[, ctx])`` when one is given. ``when`` guards the step:
        it runs only if the condition(s) hold (``match="any"`` or ``"all"``) and is skipped
        otherwise, while the steps after it run either way."""
        step = task_step(
            fn,
            name=name,
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            retry=retry,
            compensate=compensate,
            bulkhead=bulkhead,
            breaker=breaker,
            fallback=fallback,
            when=when,
            match=match,
            writes=writes,
            inline=inline,
        )
        return self._draft.add(step, fn)

    def add(self, step: Step) -> str:
        """Add a prebuilt IR step (used by other front ends)."""
        return self._draft.add(step)

    # -- edges -----------------------------------------------------------------------------

    def edge(self, source: StepRef | Sequence[StepRef], target: StepRef) -> Workflow:
        """``source`` → ``target``; a list of sources makes ``target`` a join of all of them."""
        sources = [source] if isinstance(source, str) or callable(source) else list(source)
        self._draft.connect(sources, target)
        return self

    def chain(self, *refs: StepRef) -> Workflow:
        """``a → b → c``."""
        for a, b in pairwise(refs):
            self.edge(a, b)
        return self

    def start(self, *refs: StepRef) -> Workflow:
        """The steps that start a run (default: the first step declared)."""
        self._draft.start_at(refs)
        return self

    def configure(self, **changes: Any) -> Workflow:
        """Change configuration fields (e.g. ``webhook_endpoints`` per environment); the
        changed workflow is a new version."""
        self.config = WorkflowConfiguration.model_validate({**self.config.model_dump(), **changes})
        self._draft.changed()
        return self

    # -- compile ---------------------------------------------------------------------------

    def compile(self) -> WorkflowIR:
        draft = self._draft
        if self._compiled is None or self._compiled[0] != draft.version:
            schema = StateSchema.from_type(draft.state_type)
            graph = draft.graph(schema, self.config)
            validate_workflow(graph, schema, path="steps")
            ir = WorkflowIR.create(self.name, graph, schema, self.config)
            self._compiled = (draft.version, ir)
        return self._compiled[1]
