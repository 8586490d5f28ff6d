"""A workflow definition under construction: its steps, edges and start, the workers its
orchestrators may use, and which function is which step. The builder's verbs add to it (and
only to it); compiling turns it into the IR's graph."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import pairwise
from typing import Any

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
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.handlers import make_handler, step_name
from cadenza.graph.ir import Graph, Step, StepKind
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy

START = "__start__"


class Draft:
    """The parts of workflow ``name`` (whose state is ``state_type``) declared so far.
    ``version`` changes with every change, so that a compiled IR can tell it is stale."""

    def __init__(self, name: str, state_type: Any) -> None:
        self.name = name
        self.state_type = state_type
        self.steps: dict[str, Step] = {}
        self.edges: list[tuple[str, str]] = []
        self.entry: list[str] = []
        self.workers: dict[str, Step] = {}  # declared with ``worker``, by name
        self.version = 0
        self._names: dict[int, str] = {}  # id(fn) -> step name, for references by function

    def changed(self) -> None:
        self.version += 1

    # -- adding ----------------------------------------------------------------------------

    def add(self, step: Step, fn: Callable[..., Any] | None = None) -> str:
        """Add ``step`` (made from ``fn``, which then names it in edges and routes)."""
        if step.name in self.steps:
            raise DefinitionError(
                f"duplicate step name {step.name!r}; give one of them another name (name=...)",
                path=f"steps.{step.name}",
            )
        if step.name == START:
            raise DefinitionError(f"{START!r} is reserved", path=f"steps.{step.name}")
        self.steps[step.name] = step
        if fn is not None:
            self._names.setdefault(id(fn), step.name)
        self.changed()
        return step.name

    def add_worker(self, step: Step, path: str) -> str:
        if step.name in self.workers:
            raise DefinitionError(f"duplicate worker name {step.name!r}", path=path)
        self.workers[step.name] = step
        self.changed()
        return step.name

    def connect(self, sources: Iterable[StepRef], target: StepRef) -> None:
        """Edges from every source to ``target`` (:data:`START`: it starts a run)."""
        t = self.ref(target)
        for s in sources:
            ref = self.ref(s)
            if ref == START:
                self.entry.append(t)
            else:
                self.edges.append((ref, t))
        self.changed()

    def start_at(self, refs: Iterable[StepRef]) -> None:
        self.entry.extend(self.ref(r) for r in refs)
        self.changed()

    # -- references ------------------------------------------------------------------------

    def ref(self, ref: StepRef) -> str:
        """The step a name or a step's function refers to."""
        if isinstance(ref, str):
            return ref
        name = self._names.get(id(ref))
        if name is None:
            raise DefinitionError(
                f"{step_name(ref)!r} is not a step of workflow {self.name!r}; "
                "add it with @wf.step or wf.task first"
            )
        return name

    def target(self, ref: StepRef) -> str:
        """A route target: a step name, a step's function, or a new function (added as a
        task, so routes can name their handlers directly)."""
        if not isinstance(ref, str) and id(ref) not in self._names:
            return self.add(task_step(ref), ref)
        return self.ref(ref)

    def branch(self, spec: Any, path: str) -> Graph:
        """A branch's graph: a sub-workflow's, or a function or list of functions (or IR
        steps) run in order."""
        sub = getattr(spec, "draft", None)  # a Workflow
        if isinstance(sub, Draft):
            schema = StateSchema.from_type(self.state_type)
            return sub.graph(schema, spec.config)
        fns = [spec] if callable(spec) else list(spec)
        if not fns:
            raise DefinitionError("a branch needs at least one step", path=path)
        steps: dict[str, Step] = {}
        for i, fn in enumerate(fns):
            if isinstance(fn, Step):
                step = fn
            else:
                step = Step(
                    name=step_name(fn),
                    kind=StepKind.TASK,
                    handler=make_handler(fn, path=f"{path}[{i}]"),
                    writes=_declared_writes(fn),
                )
            if step.name in steps:
                raise DefinitionError(f"duplicate step name {step.name!r}", path=f"{path}[{i}]")
            steps[step.name] = step
        names = list(steps)
        return Graph.build(steps, tuple(pairwise(names)), (names[0],))

    # -- compiling -------------------------------------------------------------------------

    def graph(self, schema: StateSchema, config: WorkflowConfiguration) -> Graph:
        """The graph of the steps declared so far. With no edges, no conditional and no
        start, steps run in declaration order."""
        if not self.steps:
            raise DefinitionError(f"workflow {self.name!r} has no steps", path="steps")
        edges = list(self.edges)
        has_conditional = any(s.kind is StepKind.CONDITIONAL for s in self.steps.values())
        names = list(self.steps)
        if not edges and not has_conditional and not self.entry:
            edges = list(pairwise(names))
        for step in self.steps.values():
            edges.extend((step.name, t) for t in step.targets())
        entry = tuple(dict.fromkeys(self.entry)) or (names[0],)
        steps = dict(self.steps)
        for name in config.require_approval:
            entry = _gate(name, steps, edges, entry, config.allowed_users)
        edges = list(dict.fromkeys(edges))
        for name, step in steps.items():
            on_reject = (
                step.options.get("on_reject") if step.kind is StepKind.HUMAN_APPROVAL else None
            )
            if on_reject:  # an approval routes: its successors when approved, on_reject if not
                approved = [b for a, b in edges if a == name and b != on_reject]
                steps[name] = replace(step, options={**step.options, "approved": approved})
        return Graph.build(steps, tuple(edges), entry)


def task_step(
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
) -> Step:
    """A SEQUENTIAL step calling ``fn`` (see :meth:`Workflow.task`)."""
    name = name or step_name(fn)
    path = f"steps.{name}"
    handler = make_handler(fn, path=path, inline=inline)
    if fallback is not None and breaker is None:
        raise DefinitionError(
            "a fallback is used only while the step's circuit breaker is open; name the "
            "breaker (breaker='payments')",
            path=f"{path}.fallback",
        )
    return Step(
        name=name,
        kind=StepKind.TASK,
        handler=handler,
        policy=_policy(timeout, retries, retry_delay, retry, path, bulkhead, breaker),
        writes=frozenset(writes) if writes is not None else _declared_writes(fn),
        compensate=make_handler(compensate, path=f"{path}.compensate")
        if compensate is not None
        else None,
        fallback=make_handler(fallback, path=f"{path}.fallback") if fallback is not None else None,
        guard=_guard(when, f"{path}.when"),
        guard_all=_enum(_Match, match, f"{path}.match") is _Match.ALL,
    )
