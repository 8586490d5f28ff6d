"""The Python builder: decorated step functions and a few verbs (``task``, ``parallel``,
``map``, ``conditional``, ``loop``, ``wait``, ``edge``/``chain``) that compile to the IR.

When a workflow declares no edges, no conditional and no start, its steps run in declaration
order."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar, overload

from cadenza.errors import DefinitionError, ExpressionError
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.expressions import compile_expression
from cadenza.graph.handlers import make_handler, step_name
from cadenza.graph.ir import (
    Condition,
    FailurePolicy,
    Graph,
    Route,
    RouteMode,
    Step,
    StepKind,
    StepPolicy,
    WorkflowIR,
)
from cadenza.graph.validate import validate_workflow
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy
from cadenza.runtime.state import StateSchema

F = TypeVar("F", bound=Callable[..., Any])
StepRef = str | Callable[..., Any]

START = "__start__"


class Workflow:
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

    def parallel(
        self,
        name: str,
        branches: Sequence[Any],
        *,
        max_concurrent: int | None = None,
        on_failure: str | FailurePolicy = FailurePolicy.FAIL_FAST,
    ) -> str:
        """Run ``branches`` concurrently (each a function, a list of functions run in order, or
        a sub-``Workflow``) and join their updates, in branch order, through the reducers."""
        path = f"steps.{name}"
        if not branches:
            raise DefinitionError("a parallel step needs at least one branch", path=path)
        graphs = tuple(self._branch(b, f"{path}.branches[{i}]") for i, b in enumerate(branches))
        return self._add(
            Step(
                name=name,
                kind=StepKind.PARALLEL,
                branches=graphs,
                max_concurrent=_positive(max_concurrent, f"{path}.max_concurrent"),
                on_failure=_enum(FailurePolicy, on_failure, f"{path}.on_failure"),
            )
        )

    def map(
        self,
        name: str,
        *,
        items: str | Callable[..., Any],
        branch: Any,
        max_concurrent: int | None = None,
        on_failure: str | FailurePolicy = FailurePolicy.FAIL_FAST,
    ) -> str:
        """Run ``branch`` once per element of a list known only at run time: the state key
        ``items`` or the list ``items(state)`` returns. Each branch sees ``ctx.item`` and
        ``ctx.index``; updates join in item order."""
        path = f"steps.{name}"
        return self._add(
            Step(
                name=name,
                kind=StepKind.MAP,
                items=items,
                body=self._branch(branch, f"{path}.branch"),
                max_concurrent=_positive(max_concurrent, f"{path}.max_concurrent"),
                on_failure=_enum(FailurePolicy, on_failure, f"{path}.on_failure"),
            )
        )

    def conditional(
        self,
        name: str,
        routes: Mapping[StepRef, str | Callable[..., Any]] | Sequence[StepRef] | None = None,
        *,
        router: Callable[..., Any] | None = None,
        default: StepRef | None = None,
        mode: str | RouteMode = RouteMode.FIRST,
    ) -> str:
        """Route to steps by condition.

        Either ``routes`` maps each target step to an expression (``"amount > 10000"``) or a
        predicate ``fn(state) -> bool``; or ``router(state)`` returns the target name (or a
        list of names, or ``None``) and ``routes`` lists the targets it may return. With no
        match the ``default`` runs; with no default, nothing downstream of this step runs.
        A target given as a function that is not a step yet is added as a task."""
        path = f"steps.{name}"
        compiled: list[Route] = []
        if router is None:
            if not isinstance(routes, Mapping) or not routes:
                raise DefinitionError(
                    "give routes as {target: condition} or a router function", path=path
                )
            for i, (target, cond) in enumerate(routes.items()):
                compiled.append(
                    Route(self._target(target), _condition(cond, f"{path}.routes[{i}]"))
                )
        else:
            if routes is None or isinstance(routes, Mapping | str):
                raise DefinitionError(
                    "a router needs the list of steps it may return: routes=[...]", path=path
                )
            compiled = [Route(self._target(t)) for t in routes]
        return self._add(
            Step(
                name=name,
                kind=StepKind.CONDITIONAL,
                routes=tuple(compiled),
                router=make_handler(router, path=f"{path}.router", inline=True)
                if router is not None
                else None,
                default=self._target(default) if default is not None else None,
                mode=_enum(RouteMode, mode, f"{path}.mode"),
            )
        )

    def loop(
        self,
        name: str,
        *,
        body: Any,
        until: str | Callable[..., Any],
        max_iterations: int,
    ) -> str:
        """Repeat ``body`` until ``until`` holds (checked after each iteration). Reaching
        ``max_iterations`` without it holding fails the run."""
        path = f"steps.{name}"
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise DefinitionError(
                "max_iterations must be a positive integer (a loop without a bound could run "
                "forever)",
                path=f"{path}.max_iterations",
            )
        return self._add(
            Step(
                name=name,
                kind=StepKind.LOOP,
                body=self._branch(body, f"{path}.body"),
                until=_condition(until, f"{path}.until"),
                max_iterations=max_iterations,
            )
        )

    def wait(
        self,
        name: str,
        *,
        seconds: float | None = None,
        signal: str | None = None,
        output: str | None = None,
    ) -> str:
        """A durable timer (the run resumes after ``seconds`` even across a restart), or a
        wait for the named ``signal`` (``engine.signal``), failing after ``seconds`` if given;
        the signal's payload is stored under ``output``."""
        path = f"steps.{name}"
        if seconds is None and signal is None:
            raise DefinitionError("give seconds, a signal, or both", path=path)
        if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
            raise DefinitionError("seconds must be a number >= 0", path=f"{path}.seconds")
        options = {"signal": signal, "output": output} if signal is not None else {}
        return self._add(
            Step(
                name=name,
                kind=StepKind.WAIT,
                seconds=float(seconds) if seconds is not None else None,
                writes=frozenset({output}) if output else None,
                options=options,
            )
        )

    def approval(
        self,
        name: str,
        *,
        approvers: Sequence[str],
        quorum: int = 1,
        required_for: Sequence[str] = (),
        timeout: float | None = None,
        on_timeout: str = "reject",
        summary: str = "",
        show: Sequence[str] = (),
        on_reject: StepRef | None = None,
    ) -> str:
        """A HUMAN_APPROVAL step: the run waits (holding nothing) until ``quorum`` distinct
        ``approvers`` (users or roles) approve, or one rejects (the step fails, and with it the
        run, after compensation). ``required_for``: state flags of which one must hold for the
        approval to apply (otherwise it is skipped). ``timeout`` seconds, then ``on_timeout``:
        ``"reject"``, ``"approve"`` or ``"escalate:role1,role2"`` (a new period for them).
        ``summary`` and the state keys in ``show`` are what the approver sees. A rejection
        fails the run, or with ``on_reject`` goes to that step instead of the ones after."""
        path = f"steps.{name}"
        if not approvers or isinstance(approvers, str):
            raise DefinitionError("approvers is a list of users or roles", path=f"{path}.approvers")
        if not isinstance(quorum, int) or quorum < 1:
            raise DefinitionError("quorum must be a positive integer", path=f"{path}.quorum")
        if on_timeout not in ("reject", "approve") and not on_timeout.startswith("escalate:"):
            raise DefinitionError(
                f"on_timeout is 'reject', 'approve' or 'escalate:ROLE', got {on_timeout!r}",
                path=f"{path}.on_timeout",
            )
        if timeout is not None and timeout <= 0:
            raise DefinitionError("timeout must be a positive number", path=f"{path}.timeout")
        options = {
            "approvers": list(approvers),
            "quorum": quorum,
            "required_for": list(required_for),
            "timeout": timeout,
            "on_timeout": on_timeout,
            "summary": summary,
            "show": list(show),
            "on_reject": self._target(on_reject) if on_reject is not None else None,
        }
        return self._add(Step(name=name, kind=StepKind.HUMAN_APPROVAL, options=options))

    def rollback(self, name: str, *, reason: str = "") -> str:
        """A ROLLBACK step: reaching it compensates the completed steps (newest first) and
        fails the run with ``reason``. Put it on a route, e.g. a rejected payment."""
        return self._add(Step(name=name, kind=StepKind.ROLLBACK, options={"reason": reason}))

    def webhook(
        self,
        name: str,
        *,
        endpoint: str,
        method: str = "POST",
        payload: Sequence[str] | None = None,
        output: str | None = None,
        headers: Mapping[str, str] | None = None,
        secret_env: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        breaker: str | None = None,
    ) -> str:
        """A WEBHOOK step: ``method`` the JSON of the state keys ``payload`` (the whole state
        when ``None``) to ``endpoint`` (or to ``config.webhook_endpoints[name]``), signed with
        HMAC-SHA256 when ``secret_env`` names an environment variable holding the key (see
        :mod:`cadenza.steps.webhook` for the scheme). The answer (JSON, else text) is stored
        under ``output`` when given. Connection errors, timeouts (default 30 s), 5xx, 408 and
        429 are retried per ``retry`` (else the workflow's ``max_retries``); other statuses
        fail the step at once. Every attempt sends the same ``Idempotency-Key``."""
        path = f"steps.{name}"
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise DefinitionError(
                f"endpoint must be an http(s) URL, got {endpoint!r}", path=f"{path}.endpoint"
            )
        verb = method.upper() if isinstance(method, str) else method
        if verb not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise DefinitionError(
                f"{method!r} is not one of: GET, POST, PUT, PATCH, DELETE", path=f"{path}.method"
            )
        if payload is not None and (
            isinstance(payload, str) or not all(isinstance(k, str) for k in payload)
        ):
            raise DefinitionError(
                "payload is a list of state keys (or None for the whole state)",
                path=f"{path}.payload",
            )
        if output is not None and (not isinstance(output, str) or not output):
            raise DefinitionError("output is the state key to store the answer in", path=path)
        if secret_env is not None and (not isinstance(secret_env, str) or not secret_env):
            raise DefinitionError(
                "secret_env is the name of an environment variable", path=f"{path}.secret_env"
            )
        options = {
            "endpoint": endpoint,
            "method": verb,
            "payload": list(payload) if payload is not None else None,
            "output": output,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
            "secret_env": secret_env,
        }
        return self._add(
            Step(
                name=name,
                kind=StepKind.WEBHOOK,
                policy=_policy(timeout, None, 0.0, retry, path, breaker=breaker),
                writes=frozenset({output}) if output else frozenset(),
                options=options,
            )
        )

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


def _policy(
    timeout: float | None,
    retries: int | None,
    delay: float,
    retry: RetryPolicy | None,
    path: str,
    bulkhead: Bulkhead | None = None,
    breaker: str | None = None,
) -> StepPolicy:
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise DefinitionError(
            "timeout must be a positive number of seconds", path=f"{path}.timeout"
        )
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise DefinitionError("retries must be an integer >= 0", path=f"{path}.retries")
    if delay < 0:
        raise DefinitionError("retry_delay must be >= 0", path=f"{path}.retry_delay")
    if retry is not None and retries is not None:
        raise DefinitionError("give retries or retry=RetryPolicy(...), not both", path=path)
    if retry is None and retries is not None:
        retry = RetryPolicy(max_attempts=retries + 1, initial_delay=delay, jitter=0.0)
    if breaker is not None and (not isinstance(breaker, str) or not breaker):
        raise DefinitionError("breaker is the name of a dependency", path=f"{path}.breaker")
    return StepPolicy(timeout=timeout, retry=retry, bulkhead=bulkhead, breaker=breaker)


def _condition(cond: str | Callable[..., Any], path: str) -> Condition:
    if isinstance(cond, str):
        try:
            return compile_expression(cond)
        except ExpressionError as exc:
            raise DefinitionError(str(exc), path=path) from exc
    if callable(cond):
        return cond
    raise DefinitionError(
        f"a condition is an expression string or a function, got {cond!r}", path=path
    )


def _gate(
    name: str,
    steps: dict[str, Step],
    edges: list[tuple[str, str]],
    entry: tuple[str, ...],
    approvers: Sequence[str],
) -> tuple[str, ...]:
    """Put an approval step in front of ``name`` (``require_approval``): every edge into the
    step goes through the gate. Returns the entry steps, with the gate instead of ``name``."""
    path = "config.require_approval"
    if name not in steps:
        close = difflib.get_close_matches(name, list(steps), n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        raise DefinitionError(
            f"no step named {name!r} to put an approval in front of{hint}", path=path
        )
    if not approvers:
        raise DefinitionError(
            "require_approval needs someone to approve: list users or roles in allowed_users",
            path=path,
        )
    gate = f"approve_{name}"
    if gate in steps:
        raise DefinitionError(f"a step is already named {gate!r}", path=path)
    steps[gate] = Step(
        name=gate,
        kind=StepKind.HUMAN_APPROVAL,
        options={"approvers": list(approvers), "quorum": 1, "summary": f"run {name}?"},
    )
    edges[:] = [(a, gate if b == name else b) for a, b in edges]
    edges.append((gate, name))
    return tuple(gate if e == name else e for e in entry)


class _Match(StrEnum):
    ANY = "any"
    ALL = "all"


def _guard(when: Any, path: str) -> tuple[Condition, ...]:
    if when is None:
        return ()
    items = [when] if isinstance(when, str) or callable(when) else list(when)
    if not items:
        raise DefinitionError("give at least one condition", path=path)
    return tuple(_condition(c, f"{path}[{i}]") for i, c in enumerate(items))


def _positive(value: int | None, path: str) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise DefinitionError("must be a positive integer", path=path)
    return value


def _enum(enum: Any, value: Any, path: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise DefinitionError(f"{value!r} is not one of: {choices}", path=path) from None


def _declared_writes(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Keys a handler promises to write, read from a ``TypedDict`` return annotation."""
    import typing

    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    if ret is not None and typing.is_typeddict(ret):
        return frozenset(typing.get_type_hints(ret))
    return None
