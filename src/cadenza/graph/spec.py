"""The declarative format: a workflow as data (YAML or JSON), with the design brief's step
vocabulary. These models validate the document; ``spec_compile`` turns it into the same IR as
the Python builder, and ``spec_load`` reads files and locates problems in them.

Semantics of the brief's shorthand:

- ``steps`` run in list order unless a step says ``next`` (a name, a list of names to fan
  out to, or ``[]`` to end there).
- CONDITIONAL with ``then``/``else`` (or ``routes``) routes to those steps. CONDITIONAL with
  only ``conditions`` is a *guard*: the step's handler runs when the conditions hold (any of
  them, or all with ``match: all``) and is skipped otherwise (a ``step_skipped`` event); the
  steps after it run either way.
- PARALLEL runs ``branches`` (each a step, a list of steps, or a handler name); without
  ``branches`` it runs the handlers registered under its name with ``branch=True``. With
  ``for_each: KEY`` it runs its one branch once per item of that state list (``ctx.item``).
- ``required_for`` on HUMAN_APPROVAL makes the approval apply only when those state flags hold.
- A step's handler is ``handler`` or, by default, its name: a registered name or an import
  path ``package.module:function``.
- REACT runs ``model`` with ``tools`` (registered names or import paths of functions or
  tools) and a ``system_prompt``, at most ``max_steps`` (or ``max_iterations``) model calls;
  ``input_key`` names the request, ``messages_key`` the conversation, ``output`` the answer's
  key. A model is a name registered with ``register_model``, ``scripted:FILE.json``, an
  import path, or a provider spec for ``cadenza.agents.config.load_model``.
- ORCHESTRATOR has a ``planner`` and an optional ``synthesizer`` (each a handler or a
  model) and ``workers``: WORKER steps (``type`` may be left out there), each with a
  ``capability`` and a ``handler`` or a ``model`` with ``tools``. A WORKER is never a step of
  the flow on its own.
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[A-Za-z_][A-Za-z0-9_\-]*$"

# Bounds on the numbers of a workflow file (the README states them): every duration is finite
# and at most a year, every count is at least 1 and small enough to mean what it says. A
# negative retry or an infinite timeout is a typo to refuse, not a run to start.
MAX_SECONDS = 365 * 24 * 3600
MAX_RETRIES = 100
MAX_BACKOFF = 10.0
MAX_ITERATIONS = 100_000
MAX_AGENT_STEPS = 1_000
MAX_CONCURRENCY = 10_000
MAX_QUORUM = 1_000
MAX_TOKENS = 100_000_000

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Timeout = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=MAX_RETRIES)]


class StepType(StrEnum):
    SEQUENTIAL = "SEQUENTIAL"
    PARALLEL = "PARALLEL"
    CONDITIONAL = "CONDITIONAL"
    LOOP = "LOOP"
    REACT = "REACT"
    HUMAN_APPROVAL = "HUMAN_APPROVAL"
    ORCHESTRATOR = "ORCHESTRATOR"
    WORKER = "WORKER"
    WEBHOOK = "WEBHOOK"
    ROLLBACK = "ROLLBACK"
    WAIT = "WAIT"


class RetrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=MAX_RETRIES + 1)
    initial_delay: Seconds = 1.0
    backoff: float = Field(default=2.0, ge=1, le=MAX_BACKOFF, allow_inf_nan=False)
    max_delay: Seconds = 60.0
    jitter: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)


class BulkheadSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    limit: int = Field(ge=1, le=MAX_CONCURRENCY)


Targets = str | list[str]


class StepSpec(BaseModel):
    """One step. Fields that do not apply to the step's type are refused by name."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: StepType = StepType.SEQUENTIAL
    name: str = Field(pattern=NAME, max_length=100)
    description: str | None = None
    handler: str | None = None
    # routing
    next: Targets | None = None
    conditions: Targets | None = None
    match: Literal["any", "all"] = "any"
    then: Targets | None = None
    else_: Targets | None = Field(default=None, alias="else")
    routes: dict[str, str] | None = None
    default: str | None = None
    # policies
    timeout: Timeout | None = None
    retry: Retries | RetrySpec | None = None
    compensate: str | None = None
    breaker: str | None = None
    fallback: str | None = None
    bulkhead: BulkheadSpec | None = None
    # data mapping
    input: list[str] | None = None
    output: str | dict[str, str] | None = None
    # composite steps
    branches: list[StepSpec | str | list[StepSpec | str]] | None = None
    for_each: str | None = None
    max_concurrent: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    on_failure: Literal["fail_fast", "collect"] = "fail_fast"
    body: list[StepSpec] | None = None
    until: str | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=MAX_ITERATIONS)
    seconds: Seconds | None = None
    reason: str | None = None
    # WEBHOOK
    endpoint: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    payload: list[str] | None = None
    headers: dict[str, str] | None = None
    secret_env: str | None = None
    callback: str | None = None
    # HUMAN_APPROVAL
    approvers: list[str] | None = None
    required_for: list[str] | None = None
    quorum: int | None = Field(default=None, ge=1, le=MAX_QUORUM)
    on_timeout: str | None = None
    on_reject: str | None = None
    summary: str | None = None
    show: list[str] | None = None
    security_level: Literal["low", "medium", "high", "critical"] | None = None
    # REACT and WORKER agents (models by registry name, scripted:FILE.json or provider spec)
    model: str | None = None
    tools: list[str] | None = None
    system_prompt: str | None = None
    max_steps: int | None = Field(default=None, ge=1, le=MAX_AGENT_STEPS)
    token_budget: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    messages_key: str | None = None
    input_key: str | None = None
    on_max_steps: Literal["fail", "finish"] | None = None
    # ORCHESTRATOR (planner, synthesizer: a handler or a model) and WORKER
    planner: str | None = None
    planner_prompt: str | None = None
    synthesizer: str | None = None
    synthesizer_prompt: str | None = None
    workers: list[StepSpec] | None = None
    on_subtask_failure: Literal["fail", "report"] | None = None
    results_key: str | None = None
    max_subtasks: int | None = Field(default=None, ge=1, le=MAX_AGENT_STEPS)
    capability: str | None = None

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_are_workers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                {"type": "WORKER", **item}
                if isinstance(item, dict) and "type" not in item
                else item
                for item in value
            ]
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            if upper not in StepType.__members__:
                close = difflib.get_close_matches(upper, list(StepType.__members__), n=1)
                hint = f" — did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown step type {value!r}{hint} (types: {', '.join(StepType)})"
                )
            return upper
        return value

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> StepSpec:
        t = self.type
        _check_fields_used(self)
        if t is StepType.LOOP and (self.body is None or self.until is None):
            raise ValueError("a LOOP needs 'body' (its steps) and 'until' (its exit condition)")
        if t is StepType.LOOP and self.max_iterations is None:
            raise ValueError(
                "a LOOP needs 'max_iterations' (a loop without a bound could run forever)"
            )
        if t is StepType.WEBHOOK and not self.endpoint:
            raise ValueError("a WEBHOOK needs an 'endpoint'")
        if t is StepType.WAIT and self.seconds is None:
            raise ValueError("a WAIT needs 'seconds'")
        if t is StepType.HUMAN_APPROVAL and not self.approvers:
            raise ValueError("a HUMAN_APPROVAL needs 'approvers' (users or roles)")
        if t is StepType.CONDITIONAL:
            routed = self.then is not None or self.else_ is not None or self.routes is not None
            if not routed and self.conditions is None:
                raise ValueError("a CONDITIONAL needs 'conditions' (a guard) or 'then'/'routes'")
            if self.then is not None and self.conditions is None:
                raise ValueError("'then' needs 'conditions' to decide when to take it")
            if self.routes is not None and (self.then is not None or self.conditions is not None):
                raise ValueError("give 'routes' or 'conditions' with 'then'/'else', not both")
        if t is StepType.REACT:
            if not self.model:
                raise ValueError("a REACT needs a 'model'")
            if self.max_steps is not None and self.max_iterations is not None:
                raise ValueError("give 'max_steps' or 'max_iterations', not both")
            if (self.max_iterations or 0) > MAX_AGENT_STEPS:
                raise ValueError(
                    f"'max_iterations' is at most {MAX_AGENT_STEPS} on a REACT (its model calls)"
                )
        if t is StepType.WORKER:
            if not self.capability:
                raise ValueError("a WORKER needs a 'capability'")
            if (self.handler is None) == (self.model is None):
                raise ValueError("a WORKER needs a 'handler' or a 'model' (an agent), not both")
        if t is StepType.ORCHESTRATOR:
            if not self.planner:
                raise ValueError("an ORCHESTRATOR needs a 'planner' (a handler or a model)")
            if not self.workers:
                raise ValueError("an ORCHESTRATOR needs 'workers' (WORKER steps)")
            strays = [w.name for w in self.workers if w.type is not StepType.WORKER]
            if strays:
                raise ValueError(f"'workers' holds WORKER steps only, not {strays[0]!r}")
        if self.fallback is not None and self.breaker is None:
            raise ValueError("'fallback' is used only while the step's 'breaker' is open")
        return self

    @property
    def is_guard(self) -> bool:
        return (
            self.type is StepType.CONDITIONAL
            and self.then is None
            and self.else_ is None
            and self.routes is None
        )


class FieldSpec(BaseModel):
    """A state field: a type name and how updates merge."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["str", "int", "float", "bool", "list", "dict", "any"] = "any"
    reducer: str | None = None  # "append"/"add", "merge", "max", "min", or package.module:fn


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, max_length=100)
    version: str | None = None
    description: str | None = None
    handlers: str | list[str] | None = None
    state: (
        dict[str, FieldSpec | Literal["str", "int", "float", "bool", "list", "dict", "any"]] | None
    ) = None
    config: dict[str, Any] | None = None
    steps: Annotated[list[StepSpec], Field(min_length=1)]


_ALL = frozenset(StepType)
_TASK = frozenset({StepType.SEQUENTIAL, StepType.CONDITIONAL})  # CONDITIONAL: as a guard
_AGENT = frozenset({StepType.REACT, StepType.WORKER})
_CALLS = _TASK | _AGENT | {StepType.WEBHOOK, StepType.ORCHESTRATOR}  # steps that call out
# Which step types use each field: a field given to a step that does not use it is refused,
# since silently ignoring it (``retry: -5`` on a WAIT) hides a typo or a misunderstanding.
# ``name``, ``type``, ``description`` and ``security_level`` (annotations) fit every step.
_ONLY_FOR: dict[str, frozenset[StepType]] = {
    "handler": _TASK | {StepType.WORKER},
    "next": _ALL - {StepType.WORKER},
    "conditions": frozenset({StepType.CONDITIONAL}),
    "match": frozenset({StepType.CONDITIONAL}),
    "then": frozenset({StepType.CONDITIONAL}),
    "else_": frozenset({StepType.CONDITIONAL}),
    "routes": frozenset({StepType.CONDITIONAL}),
    "default": frozenset({StepType.CONDITIONAL}),
    "timeout": _CALLS | {StepType.HUMAN_APPROVAL},
    "retry": _CALLS,
    "compensate": _TASK,
    "breaker": _TASK | {StepType.WEBHOOK},
    "fallback": _TASK,
    "bulkhead": _TASK,
    "input": _TASK,
    "output": _TASK | {StepType.WEBHOOK, StepType.REACT, StepType.ORCHESTRATOR},
    "branches": frozenset({StepType.PARALLEL}),
    "for_each": frozenset({StepType.PARALLEL}),
    "max_concurrent": frozenset({StepType.PARALLEL, StepType.ORCHESTRATOR}),
    "on_failure": frozenset({StepType.PARALLEL}),
    "body": frozenset({StepType.LOOP}),
    "until": frozenset({StepType.LOOP}),
    "max_iterations": frozenset({StepType.LOOP, StepType.REACT}),
    "seconds": frozenset({StepType.WAIT}),
    "reason": frozenset({StepType.ROLLBACK}),
    "endpoint": frozenset({StepType.WEBHOOK}),
    "method": frozenset({StepType.WEBHOOK}),
    "payload": frozenset({StepType.WEBHOOK}),
    "headers": frozenset({StepType.WEBHOOK}),
    "secret_env": frozenset({StepType.WEBHOOK}),
    "callback": frozenset({StepType.WEBHOOK}),
    "approvers": frozenset({StepType.HUMAN_APPROVAL}),
    "required_for": frozenset({StepType.HUMAN_APPROVAL}),
    "quorum": frozenset({StepType.HUMAN_APPROVAL}),
    "on_timeout": frozenset({StepType.HUMAN_APPROVAL}),
    "on_reject": frozenset({StepType.HUMAN_APPROVAL}),
    "summary": frozenset({StepType.HUMAN_APPROVAL}),
    "show": frozenset({StepType.HUMAN_APPROVAL}),
    "model": _AGENT,
    "tools": _AGENT,
    "system_prompt": _AGENT,
    "max_steps": _AGENT,
    "token_budget": _AGENT,
    "temperature": _AGENT,
    "messages_key": frozenset({StepType.REACT}),
    "input_key": frozenset({StepType.REACT, StepType.ORCHESTRATOR}),
    "on_max_steps": frozenset({StepType.REACT}),
    "planner": frozenset({StepType.ORCHESTRATOR}),
    "planner_prompt": frozenset({StepType.ORCHESTRATOR}),
    "synthesizer": frozenset({StepType.ORCHESTRATOR}),
    "synthesizer_prompt": frozenset({StepType.ORCHESTRATOR}),
    "workers": frozenset({StepType.ORCHESTRATOR}),
    "on_subtask_failure": frozenset({StepType.ORCHESTRATOR}),
    "results_key": frozenset({StepType.ORCHESTRATOR}),
    "max_subtasks": frozenset({StepType.ORCHESTRATOR}),
    "capability": frozenset({StepType.WORKER}),
}
# A CONDITIONAL that routes (then/else/routes) runs no handler: the task fields are a guard's.
_GUARD_ONLY = frozenset(f for f, kinds in _ONLY_FOR.items() if StepType.SEQUENTIAL in kinds) - {
    "next"
}
# A WORKER with a handler runs no agent loop: the agent fields are for a WORKER with a model.
_AGENT_ONLY = frozenset({"tools", "system_prompt", "max_steps", "token_budget", "temperature"})


def _check_fields_used(spec: StepSpec) -> None:
    """Refuse the first field given (even with its default value) that the step does not use."""
    t = spec.type
    for field in _ONLY_FOR:
        if field not in spec.model_fields_set:
            continue
        if t not in _ONLY_FOR[field]:
            allowed = " or ".join(sorted(k.value for k in _ONLY_FOR[field]))
            raise ValueError(f"{_alias(field)!r} applies to {allowed} steps, not {t.value}")
        if t is StepType.CONDITIONAL and field in _GUARD_ONLY and not spec.is_guard:
            raise ValueError(
                f"{_alias(field)!r} applies to a CONDITIONAL that guards its handler (with only "
                "'conditions'), not to one that routes with 'then'/'else'/'routes'"
            )
        if t is StepType.WORKER and field in _AGENT_ONLY and spec.handler is not None:
            raise ValueError(f"{field!r} applies to a WORKER with a 'model', not a 'handler'")
    if "default" in spec.model_fields_set and spec.routes is None:
        raise ValueError(
            "'default' goes with 'routes' (with 'then', name the other step in 'else')"
        )
    if "match" in spec.model_fields_set and spec.routes is not None:
        raise ValueError("'match' goes with 'conditions', not with 'routes'")
    if isinstance(spec.output, dict) and t not in _TASK:
        raise ValueError(
            f"'output' maps result keys to state keys on SEQUENTIAL steps; on a {t.value} it "
            "names one state key"
        )


def _alias(field: str) -> str:
    return "else" if field == "else_" else field
