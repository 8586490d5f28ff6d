"""The Python builder: decorated step functions and a few verbs (``task``, ``parallel``,
``map``, ``conditional``, ``loop``, ``wait``, ``edge``/``chain``) that compile to the IR.

When a workflow declares no edges, no conditional and no start, its steps run in declaration
order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Any, TypeVar, overload

from cadenza.core.errors import DefinitionError
from cadenza.core.state import StateSchema
from cadenza.graph._builder_args import (
    StepRef,
    _declared_writes,
    _enum,
    _gate,
    _guard,
    _Match,
    _policy,
)
from cadenza.graph.builder_kinds import KindsMixin
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.handlers import make_handler, step_name
from cadenza.graph.ir import (
    Graph,
    Step,
    StepKind,
    WorkflowIR,
)
from cadenza.graph.validate import validate_workflow
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

START = "__start__"


class Workflow(KindsMixin):
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
        self.state_type = state
        if config is None:
            config = WorkflowConfiguration()
        elif isinstance(config, Mapping):
            config = WorkflowConfiguration(**config)
        self.config: WorkflowConfiguration = config
        self._steps: dict[str, Step] = {}
        self._edges: list[tuple[str, str]] = []
        self._entry: list[str] = []
        self._names: dict[int, str] = {}  # id(fn) -> step name, for references by function
        self._compiled: WorkflowIR | None = None

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
        name = name or step_name(fn)
        path = f"steps.{name}"
        handler = make_handler(fn, path=path, inline=inline)
        if fallback is not None and breaker is None:
            raise DefinitionError(
                "a fallback is used only while the step's circuit breaker is open; name the "
                "breaker (breaker='payments')",
                path=f"{path}.fallback",
            )
        step = Step(
            name=name,
            kind=StepKind.TASK,
            handler=handler,
            policy=_policy(timeout, retries, retry_delay, retry, path, bulkhead, breaker),
            writes=frozenset(writes) if writes is not None else _declared_writes(fn),
            compensate=make_handler(compensate, path=f"{path}.compensate")
            if compensate is not None
            else None,
            fallback=make_handler(fallback, path=f"{path}.fallback")
            if fallback is not None
            else None,
            guard=_guard(when, f"{path}.when"),
            guard_all=_enum(_Match, match, f"{path}.match") is _Match.ALL,
        )
        self._names.setdefault(id(fn), name)
        return self._add(step)

    def add(self, step: Step) -> str:
        """Add a prebuilt IR step (used by other front ends)."""
        return self._add(step)

    # -- edges -----------------------------------------------------------------------------

    def edge(self, source: StepRef | Sequence[StepRef], target: StepRef) -> Workflow:
        """``source`` → ``target``; a list of sources makes ``target`` a join of all of them."""
        sources = [source] if isinstance(source, str) or callable(source) else list(source)
        t = self._ref(target)
        for s in sources:
            ref = self._ref(s)
            if ref == START:
                self._entry.append(t)
            else:
                self._edges.append((ref, t))
        self._compiled = None
        return self

    def chain(self, *refs: StepRef) -> Workflow:
        """``a → b → c``."""
        for a, b in pairwise(refs):
            self.edge(a, b)
        return self

    def start(self, *refs: StepRef) -> Workflow:
        """The steps that start a run (default: the first step declared)."""
        self._entry.extend(self._ref(r) for r in refs)
        self._compiled = None
        return self

    def configure(self, **changes: Any) -> Workflow:
        """Change configuration fields (e.g. ``webhook_endpoints`` per environment); the
        changed workflow is a new version."""
        self.config = WorkflowConfiguration.model_validate({**self.config.model_dump(), **changes})
        self._compiled = None
        return self

    # -- compile ---------------------------------------------------------------------------

    def compile(self) -> WorkflowIR:
        if self._compiled is None:
            schema = StateSchema.from_type(self.state_type)
            graph = self._graph(schema)
            validate_workflow(graph, schema, path="steps")
            self._compiled = WorkflowIR.create(self.name, graph, schema, self.config)
        return self._compiled

    def _graph(self, schema: StateSchema) -> Graph:
        if not self._steps:
            raise DefinitionError(f"workflow {self.name!r} has no steps", path="steps")
        edges = list(self._edges)
        has_conditional = any(s.kind is StepKind.CONDITIONAL for s in self._steps.values())
        names = list(self._steps)
        if not edges and not has_conditional and not self._entry:
            edges = list(pairwise(names))
        for step in self._steps.values():
            edges.extend((step.name, t) for t in step.targets())
        entry = tuple(dict.fromkeys(self._entry)) or (names[0],)
        steps = dict(self._steps)
        for name in self.config.require_approval:
            entry = _gate(name, steps, edges, entry, self.config.allowed_users)
        edges = list(dict.fromkeys(edges))
        for name, step in steps.items():
            on_reject = (
                step.options.get("on_reject") if step.kind is StepKind.HUMAN_APPROVAL else None
            )
            if on_reject:  # an approval routes: its successors when approved, on_reject if not
                approved = [b for a, b in edges if a == name and b != on_reject]
                steps[name] = replace(step, options={**step.options, "approved": approved})
        return Graph.build(steps, tuple(edges), entry)

    # -- helpers ---------------------------------------------------------------------------

    def _add(self, step: Step) -> str:
        if step.name in self._steps:
            raise DefinitionError(
                f"duplicate step name {step.name!r}; give one of them another name (name=...)",
                path=f"steps.{step.name}",
            )
        if step.name == START:
            raise DefinitionError(f"{START!r} is reserved", path=f"steps.{step.name}")
        self._steps[step.name] = step
        self._compiled = None
        return step.name

    def _ref(self, ref: StepRef) -> str:
        if isinstance(ref, str):
            return ref
        name = self._names.get(id(ref))
        if name is None:
            raise DefinitionError(
                f"{step_name(ref)!r} is not a step of workflow {self.name!r}; "
                "add it with @wf.step or wf.task first"
            )
        return name

    def _target(self, ref: StepRef) -> str:
        """A route target: a step name, a step's function, or a new function (added as a
        task, so routes can name their handlers directly)."""
        if not isinstance(ref, str) and id(ref) not in self._names:
            return self.task(ref)
        return self._ref(ref)

    def _branch(self, spec: Any, path: str) -> Graph:
        if isinstance(spec, Workflow):
            sub = spec._graph(StateSchema.from_type(self.state_type))
            return sub
        fns = [spec] if callable(spec) else list(spec)
        if not fns:
            raise DefinitionError("a branch needs at least one step", path=path)
        steps: dict[str, Step] = {}
        for i, fn in enumerate(fns):
            if isinstance(fn, Step):
                step = fn
            else:
                name = step_name(fn)
                step = Step(
                    name=name,
                    kind=StepKind.TASK,
                    handler=make_handler(fn, path=f"{path}[{i}]"),
                    writes=_declared_writes(fn),
                )
            if step.name in steps:
                raise DefinitionError(f"duplicate step name {step.name!r}", path=f"{path}[{i}]")
            steps[step.name] = step
        names = list(steps)
        return Graph.build(steps, tuple(pairwise(names)), (names[0],))
