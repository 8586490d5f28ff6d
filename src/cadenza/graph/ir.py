"""The Workflow IR: the immutable, validated, hashed graph every front end compiles to.

Nothing downstream of this module knows whether a workflow came from the Python builder, the
LangGraph facade or a YAML file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cadenza.core.state import StateSchema
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.expressions import Expression
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy


class StepKind(StrEnum):
    TASK = "task"
    PARALLEL = "parallel"
    MAP = "map"
    CONDITIONAL = "conditional"
    LOOP = "loop"
    WAIT = "wait"
    REACT = "react"
    HUMAN_APPROVAL = "human_approval"
    ORCHESTRATOR = "orchestrator"
    WORKER = "worker"
    WEBHOOK = "webhook"
    ROLLBACK = "rollback"


class FailurePolicy(StrEnum):
    FAIL_FAST = "fail_fast"  # the first failed branch cancels the others
    COLLECT = "collect"  # every branch finishes; then the step fails listing every error


class RouteMode(StrEnum):
    FIRST = "first"  # the first route whose condition holds
    ALL = "all"  # every route whose condition holds, concurrently


Condition = Expression | Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A user function and how to call it, decided once at compile time."""

    fn: Callable[..., Any]
    is_async: bool
    wants_context: bool
    inline: bool = False  # a sync function run on the event loop instead of a thread

    @property
    def qualname(self) -> str:
        """The function's qualified name. The module is left out on purpose: the same file
        imported under another module name (a script, the CLI's loader) is the same
        definition and must hash the same."""
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__qualname__


@dataclass(frozen=True, slots=True)
class StepPolicy:
    timeout: float | None = None
    retry: RetryPolicy | None = None  # None: the workflow's max_retries, else the engine's
    bulkhead: Bulkhead | None = None  # a concurrency limit shared with other steps and runs
    breaker: str | None = None  # the circuit breaker (by dependency name) guarding the call


@dataclass(frozen=True, slots=True)
class Route:
    target: str
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    kind: StepKind
    handler: Handler | None = None
    policy: StepPolicy = field(default_factory=StepPolicy)
    writes: frozenset[str] | None = None  # declared output keys, checked at compile time
    compensate: Handler | None = None  # saga: undoes this step's effect when the run fails
    fallback: Handler | None = None  # called instead of the handler while its breaker is open
    guard: tuple[Condition, ...] = ()  # run only when these hold (any, or all with guard_all)
    guard_all: bool = False
    # parallel
    branches: tuple[Graph, ...] = ()
    max_concurrent: int | None = None
    on_failure: FailurePolicy = FailurePolicy.FAIL_FAST
    # map (uses ``body`` for the branch) and loop (``body`` repeats)
    items: str | Callable[..., Any] | None = None
    body: Graph | None = None
    until: Condition | None = None
    max_iterations: int | None = None
    # conditional
    routes: tuple[Route, ...] = ()
    router: Handler | None = None
    default: str | None = None
    mode: RouteMode = RouteMode.FIRST
    # wait
    seconds: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    # react, orchestrator, worker
    agent: AgentSpec | OrchestratorSpec | WorkerSpec | None = None

    def targets(self) -> tuple[str, ...]:
        """The steps a conditional may route to (and an approval's ``on_reject`` step)."""
        if self.kind is StepKind.HUMAN_APPROVAL:
            on_reject = self.options.get("on_reject")
            return (on_reject,) if on_reject else ()
        names = [r.target for r in self.routes]
        if self.default is not None:
            names.append(self.default)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A model with tools and a role: what a REACT step (or a WORKER that is an agent) runs.
    ``model`` is a :class:`~cadenza.agents.model.ChatModel`, ``tools`` are
    :class:`~cadenza.agents.tools.Tool` values."""

    model: Any
    tools: tuple[Any, ...] = ()
    system: str = ""
    max_steps: int = 10  # model calls, at most
    token_budget: int | None = None  # input + output tokens over the whole loop
    temperature: float | None = None
    on_max_steps: str = "fail"  # or "finish": end with the last reply as the answer

    def describe(self) -> list[Any]:
        return [
            _model_name(self.model),
            [t.describe() for t in self.tools],
            self.system,
            self.max_steps,
            self.token_budget,
            self.temperature,
            self.on_max_steps,
        ]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """A WORKER: executes subtasks of the ``capability`` it declares, with a ``handler``
    (``fn(state, ctx)``, the subtask in ``ctx.item``) or as an ``agent``."""

    capability: str
    description: str = ""
    handler: Handler | None = None
    agent: AgentSpec | None = None

    def describe(self) -> list[Any]:
        return [
            self.capability,
            self.description,
            self.handler.qualname if self.handler else None,
            self.agent.describe() if self.agent else None,
        ]


@dataclass(frozen=True, slots=True)
class OrchestratorSpec:
    """An ORCHESTRATOR: a ``planner`` (a model, or a handler ``fn(state[, ctx])``) splits the
    task into subtasks, ``workers`` (WORKER steps) execute them by capability, and a
    ``synthesizer`` (a model, or ``fn(state, results[, ctx])``) combines the results."""

    planner: Handler | Any
    workers: tuple[Step, ...]
    synthesizer: Handler | Any | None = None
    planner_prompt: str = ""
    synthesizer_prompt: str = ""
    on_subtask_failure: str = "fail"  # or "report": a failed subtask is a result, marked failed
    max_subtasks: int = 20

    def describe(self) -> list[Any]:
        return [
            _callee(self.planner),
            [_describe_step(w) for w in self.workers],
            _callee(self.synthesizer),
            self.planner_prompt,
            self.synthesizer_prompt,
            self.on_subtask_failure,
            self.max_subtasks,
        ]


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", None) or type(model).__qualname__)


def _callee(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Handler):
        return "fn:" + value.qualname
    return "model:" + _model_name(value)


@dataclass(frozen=True, slots=True)
class Graph:
    """Steps and the edges between them. ``entry`` steps start first; a step starts when every
    predecessor has finished, and runs if at least one incoming edge was taken."""

    steps: Mapping[str, Step]
    edges: tuple[tuple[str, str], ...]
    entry: tuple[str, ...]
    preds: Mapping[str, tuple[str, ...]]
    succs: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(
        cls, steps: Mapping[str, Step], edges: tuple[tuple[str, str], ...], entry: tuple[str, ...]
    ) -> Graph:
        preds: dict[str, list[str]] = {n: [] for n in steps}
        succs: dict[str, list[str]] = {n: [] for n in steps}
        for a, b in edges:
            if a in succs and b in preds and a not in preds[b]:
                succs[a].append(b)
                preds[b].append(a)
        return cls(
            steps=dict(steps),
            edges=edges,
            entry=entry,
            preds={k: tuple(v) for k, v in preds.items()},
            succs={k: tuple(v) for k, v in succs.items()},
        )

    def find(self, path: str) -> Step:
        """The step definition of a step instance path: ``"fan[1]/b2"`` is step ``b2`` of
        branch 1 of ``fan``; ``"again#3/count"`` is ``count`` in iteration 3 of ``again``."""
        head, _, rest = path.partition("/")
        name = head.split("[", 1)[0].split("#", 1)[0]
        step = self.steps.get(name)
        if step is None:
            raise KeyError(path)
        if not rest:
            return step
        if "[" in head and step.branches:
            return step.branches[int(head.split("[", 1)[1].rstrip("]"))].find(rest)
        if step.body is not None:
            return step.body.find(rest)
        raise KeyError(path)

    def describe(self) -> dict[str, Any]:
        return {
            "entry": list(self.entry),
            "edges": [list(e) for e in self.edges],
            "steps": [_describe_step(s) for s in self.steps.values()],
        }


@dataclass(frozen=True, slots=True)
class WorkflowIR:
    name: str
    graph: Graph
    schema: StateSchema
    config: WorkflowConfiguration
    version: str  # sha256 of the canonical description, first 16 hex digits

    @classmethod
    def create(
        cls, name: str, graph: Graph, schema: StateSchema, config: WorkflowConfiguration
    ) -> WorkflowIR:
        canonical = json.dumps(
            {
                "name": name,
                "graph": graph.describe(),
                "schema": schema.describe(),
                "config": config.model_dump(mode="json"),
            },
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        version = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        return cls(name=name, graph=graph, schema=schema, config=config, version=version)


def _describe_condition(cond: Condition | None) -> str | None:
    if cond is None:
        return None
    if isinstance(cond, Expression):
        return f"expr:{cond.source}"
    return "fn:" + Handler(cond, False, False).qualname


def _describe_step(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"name": step.name, "kind": str(step.kind)}
    if step.handler is not None:
        out["handler"] = step.handler.qualname
    if step.compensate is not None:
        out["compensate"] = step.compensate.qualname
    if step.fallback is not None:
        out["fallback"] = step.fallback.qualname
    if step.guard:
        out["guard"] = [_describe_condition(c) for c in step.guard]
        out["guard_all"] = step.guard_all
    if step.policy != StepPolicy():
        retry = step.policy.retry.describe() if step.policy.retry else None
        bulkhead = step.policy.bulkhead
        out["policy"] = [
            step.policy.timeout,
            retry,
            [bulkhead.name, bulkhead.limit] if bulkhead else None,
            step.policy.breaker,
        ]
    if step.branches:
        out["branches"] = [b.describe() for b in step.branches]
        out["max_concurrent"] = step.max_concurrent
        out["on_failure"] = str(step.on_failure)
    if step.body is not None:
        out["body"] = step.body.describe()
    if step.items is not None:
        out["items"] = (
            step.items if isinstance(step.items, str) else _describe_condition(step.items)
        )
    if step.until is not None:
        out["until"] = _describe_condition(step.until)
        out["max_iterations"] = step.max_iterations
    if step.routes or step.router is not None:
        out["routes"] = [[r.target, _describe_condition(r.condition)] for r in step.routes]
        out["router"] = step.router.qualname if step.router else None
        out["default"] = step.default
        out["mode"] = str(step.mode)
    if step.seconds is not None:
        out["seconds"] = step.seconds
    if step.options:
        out["options"] = {k: str(v) for k, v in sorted(step.options.items())}
    if step.agent is not None:
        out["agent"] = step.agent.describe()
        if step.max_concurrent is not None and not step.branches:
            out["max_concurrent"] = step.max_concurrent
    return out
