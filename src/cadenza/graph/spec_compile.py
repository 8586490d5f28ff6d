"""From a validated :class:`WorkflowSpec` to a :class:`Workflow` (and so to the IR): handler
names resolved, routing turned into edges, and every problem located in the file."""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_agents import add_orchestrator, add_react
from cadenza.graph._spec_refs import References
from cadenza.graph._spec_workflow import check_modules, configuration, import_modules, state_type
from cadenza.graph.builder import Workflow
from cadenza.graph.registry import HandlerRegistry, handlers
from cadenza.graph.spec import StepSpec, StepType, WorkflowSpec
from cadenza.graph.spec_load import Loc, Locator, Problem, SpecError
from cadenza.graph.spec_read import MAX_SHOWN
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import RetryPolicy


def load_workflow_file(
    path: str | Path,
    *,
    handler_modules: Sequence[str] = (),
    registry: HandlerRegistry = handlers,
    imports: bool | None = True,
) -> Workflow:
    """Read, validate and compile a YAML or JSON workflow file (``imports``: see
    :func:`compile_spec`)."""
    from cadenza.graph.spec_load import read_spec

    spec, locator = read_spec(path)
    # Handler modules next to the file import as they would from its folder.
    folder = str(Path(path).resolve().parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        return compile_spec(
            spec,
            locator,
            str(path),
            registry=registry,
            handler_modules=handler_modules,
            imports=imports,
        )
    finally:
        if added:
            sys.path.remove(folder)


def compile_spec(
    spec: WorkflowSpec,
    locator: Locator,
    file: str,
    *,
    registry: HandlerRegistry = handlers,
    handler_modules: Sequence[str] = (),
    imports: bool | None = True,
) -> Workflow:
    """Build the workflow a spec describes; raise :class:`SpecError` with every problem found.

    ``imports=True`` imports the handler modules (the spec's ``handlers`` and
    ``handler_modules``) and the modules that ``package.module:function`` references name,
    which runs their code. ``False`` imports nothing: references are checked for syntax and
    resolved where no import is needed, placeholders (which fail if run) stand in for the
    rest; the workflow is for checking, not running. ``None``: import when any handler module
    is named."""
    named = [spec.handlers] if isinstance(spec.handlers, str) else list(spec.handlers or [])
    modules = [*named, *handler_modules]
    if imports is None:
        imports = bool(modules)
    refs = References(
        registry, imports=imports, modules_named=bool(modules), base=Path(file).resolve().parent
    )
    builder = _Builder(spec, locator, file, refs)
    check_modules(builder, named, handler_modules)
    if imports:
        import_modules(builder, modules)
    workflow = builder.build()
    builder.raise_problems()
    try:
        workflow.compile()
    except DefinitionError as exc:
        raise SpecError(file, [builder.locate_definition_error(exc)]) from None
    return workflow


class _Builder:
    def __init__(self, spec: WorkflowSpec, locator: Locator, file: str, refs: References):
        self.spec = spec
        self.locator = locator
        self.file = file
        self.refs = refs
        self.problems: list[Problem] = []
        self.where: dict[str, Loc] = {}  # step name -> its place in the file
        self.comparisons = 20_000  # the budget of name comparisons for suggestions (~0.1 s)

    def problem(self, path: Loc, message: str) -> None:
        self.problems.append(self.locator.problem(path, message))

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecError(self.file, self.problems)

    def build(self) -> Workflow:
        state = state_type(self)
        config = configuration(self)
        workflow = Workflow(
            self.spec.name, state=state, config=config, description=self.spec.description or ""
        )
        self._add_steps(workflow, self.spec.steps, ("steps",))
        return workflow

    # -- steps -------------------------------------------------------------------------------

    def _add_steps(self, wf: Workflow, steps: Sequence[StepSpec], path: Loc) -> None:
        names = [s.name for s in steps]
        seen: dict[str, int] = {}
        for i, step in enumerate(steps):
            if step.name in seen:
                self.problem(
                    (*path, i, "name"),
                    f"duplicate step name {step.name!r} (also step {seen[step.name] + 1})",
                )
                continue
            seen[step.name] = i
            self.where.setdefault(step.name, (*path, i))
            self._add_step(wf, step, (*path, i))
        for i, step in enumerate(steps):
            for field, targets in _targets(step):
                for target in targets:
                    if target not in seen:
                        hint = self._suggest(target, seen)
                        self.problem((*path, i, field), f"unknown step {target!r}{hint}")
        if self.problems:
            return
        for i, step in enumerate(steps):
            following = names[i + 1] if i + 1 < len(names) else None
            for target in _successors(step, following):
                wf.edge(step.name, target)
        wf.start(names[0])

    def _suggest(self, target: str, names: Collection[str]) -> str:
        """A near-miss step name, while the comparisons stay few: difflib against every name
        of a file of thousands of steps, for each unknown name, would take seconds."""
        if len(self.problems) >= MAX_SHOWN or len(names) > self.comparisons:
            return ""
        self.comparisons -= len(names)
        close = difflib.get_close_matches(target, names, n=1)
        return f" — did you mean {close[0]!r}?" if close else ""

    def _add_step(self, wf: Workflow, step: StepSpec, path: Loc) -> None:
        t = step.type
        try:
            if t is StepType.SEQUENTIAL or step.is_guard:
                wf.task(
                    self._handler(step, path),
                    name=step.name,
                    **self._task_options(step, path),
                    when=_conditions(step) if step.is_guard else None,
                    match=step.match,
                )
            elif t is StepType.CONDITIONAL:
                self._conditional(wf, step)
            elif t is StepType.PARALLEL:
                self._parallel(wf, step, path)
            elif t is StepType.LOOP:
                body = self._sub(wf, step.body or [], (*path, "body"))
                wf.loop(
                    step.name,
                    body=body,
                    until=step.until or "",
                    max_iterations=step.max_iterations or 1,
                )
            elif t is StepType.WAIT:
                wf.wait(step.name, seconds=step.seconds or 0)
            elif t is StepType.ROLLBACK:
                wf.rollback(step.name, reason=step.reason or "")
            elif t is StepType.WEBHOOK:
                self._webhook(wf, step)
            elif t is StepType.HUMAN_APPROVAL:
                wf.approval(
                    step.name,
                    approvers=step.approvers or [],
                    quorum=step.quorum or 1,
                    required_for=step.required_for or [],
                    timeout=step.timeout,
                    on_timeout=step.on_timeout or "reject",
                    summary=step.summary or "",
                    show=step.show or [],
                    on_reject=step.on_reject,
                )
            elif t is StepType.REACT:
                add_react(self, wf, step, path)
            elif t is StepType.ORCHESTRATOR:
                add_orchestrator(self, wf, step, path)
            else:
                self.problem(
                    path,
                    "a WORKER executes subtasks of an ORCHESTRATOR: put it in that "
                    "ORCHESTRATOR's 'workers' list",
                )
        except _Reported:
            pass  # already recorded where it was found
        except DefinitionError as exc:
            self.problem(path, exc.message)

    def _task_options(self, step: StepSpec, path: Loc) -> dict[str, Any]:
        retry: RetryPolicy | None = None
        if isinstance(step.retry, int):
            retry = RetryPolicy(max_attempts=step.retry + 1)
        elif step.retry is not None:
            retry = RetryPolicy(**step.retry.model_dump())
        return {
            "timeout": step.timeout,
            "retry": retry,
            "compensate": self._ref(step.compensate, (*path, "compensate")),
            "breaker": step.breaker,
            "fallback": self._ref(step.fallback, (*path, "fallback")),
            "bulkhead": Bulkhead(step.bulkhead.name, step.bulkhead.limit)
            if step.bulkhead
            else None,
        }

    def _handler(self, step: StepSpec, path: Loc) -> Callable[..., Any]:
        named = step.handler is not None  # an empty handler is an error, not the step's name
        fn = self._ref(
            step.handler if named else step.name, (*path, "handler" if named else "name")
        )
        if fn is None:
            raise _Reported
        if step.input is None and step.output is None:
            return fn
        return _mapped(fn, step.input, step.output)

    def _ref(self, ref: str | None, path: Loc) -> Callable[..., Any] | None:
        if ref is None:
            return None
        try:
            return self.refs.handler(ref)
        except DefinitionError as exc:
            self.problem(path, exc.message)
            return None

    def _conditional(self, wf: Workflow, step: StepSpec) -> None:
        if step.routes is not None:
            wf.conditional(step.name, dict(step.routes), default=step.default)
            return
        joiner = " && " if step.match == "all" else " || "
        condition = joiner.join(f"({c})" for c in _conditions(step))
        then = _as_list(step.then)
        wf.conditional(
            step.name, dict.fromkeys(then, condition), default=_single(step.else_), mode="all"
        )

    def _parallel(self, wf: Workflow, step: StepSpec, path: Loc) -> None:
        if step.branches is not None:
            branches: list[Any] = [
                self._branch(wf, b, (*path, "branches", i)) for i, b in enumerate(step.branches)
            ]
        else:
            found = self.refs.registry.branches(step.name)
            if not found:
                single = self._ref(step.name, (*path, "name"))
                found = [single] if single is not None else []
            branches = found
        if not branches:
            raise _Reported
        if step.for_each is not None:
            if len(branches) != 1:
                raise DefinitionError(
                    "a PARALLEL with for_each runs one branch per item: give one branch"
                )
            wf.map(
                step.name,
                items=step.for_each,
                branch=branches[0],
                max_concurrent=step.max_concurrent,
                on_failure=step.on_failure,
            )
        else:
            wf.parallel(
                step.name, branches, max_concurrent=step.max_concurrent, on_failure=step.on_failure
            )

    def _branch(
        self, wf: Workflow, branch: StepSpec | str | list[StepSpec | str], path: Loc
    ) -> Any:
        if isinstance(branch, str):
            fn = self._ref(branch, path)
            if fn is None:
                raise _Reported
            return fn
        items = [branch] if isinstance(branch, StepSpec) else branch
        steps = [
            StepSpec(name=i.rsplit(":", 1)[-1], handler=i) if isinstance(i, str) else i
            for i in items
        ]
        return self._sub(wf, steps, path)

    def _sub(self, wf: Workflow, steps: Sequence[StepSpec], path: Loc) -> Workflow:
        sub = Workflow(f"{wf.name}.{path[-1]}", state=wf.state_type, config=wf.config)
        self._add_steps(sub, steps, path)
        if self.problems:
            raise _Reported
        return sub

    def _webhook(self, wf: Workflow, step: StepSpec) -> None:
        wf.webhook(
            step.name,
            endpoint=step.endpoint or "",
            method=step.method,
            payload=step.payload,
            output=step.output if isinstance(step.output, str) else None,
            headers=step.headers,
            secret_env=step.secret_env,
            timeout=step.timeout,
            retry=self._task_options(step, ())["retry"],
            breaker=step.breaker,
        )

    # -- errors from the builder -------------------------------------------------------------

    def locate_definition_error(self, exc: DefinitionError) -> Problem:
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


class _Reported(Exception):
    """A problem already recorded with its location; stop building this step."""


def _conditions(step: StepSpec) -> list[str]:
    return _as_list(step.conditions)


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _single(value: str | list[str] | None) -> str | None:
    items = _as_list(value)
    if len(items) > 1:
        raise DefinitionError("'else' names one step")
    return items[0] if items else None


def _targets(step: StepSpec) -> list[tuple[str, list[str]]]:
    out = [
        ("next", _as_list(step.next)),
        ("then", _as_list(step.then)),
        ("else", _as_list(step.else_)),
    ]
    if step.routes:
        out.append(("routes", list(step.routes)))
    if step.default:
        out.append(("default", [step.default]))
    if step.on_reject:
        out.append(("on_reject", [step.on_reject]))
    return out


def _successors(step: StepSpec, following: str | None) -> list[str]:
    """Plain edges out of a step: its ``next``, else the step after it in the list. Routing
    steps get their edges from their routes; a ROLLBACK ends the run."""
    if step.next is not None:
        return _as_list(step.next)
    if step.type is StepType.ROLLBACK or (step.type is StepType.CONDITIONAL and not step.is_guard):
        return []
    return [following] if following else []


def _mapped(
    fn: Callable[..., Any], keys: list[str] | None, output: str | dict[str, str] | None
) -> Callable[..., Any]:
    """Wrap a handler so it sees only ``keys`` of the state and its result lands where
    ``output`` says (a state key for the whole result, or result key -> state key)."""
    takes_context = len(inspect.signature(fn).parameters) >= 2

    def view(state: dict[str, Any]) -> dict[str, Any]:
        return {k: state[k] for k in keys if k in state} if keys is not None else state

    def place(result: Any) -> Any:
        if output is None or result is None:
            return result
        if isinstance(output, str):
            return {output: result}
        return {state_key: result[key] for key, state_key in output.items() if key in result}

    if inspect.iscoroutinefunction(fn):

        async def wrapper(state: dict[str, Any], ctx: Any) -> Any:
            return place(await (fn(view(state), ctx) if takes_context else fn(view(state))))
    else:

        def wrapper(state: dict[str, Any], ctx: Any) -> Any:  # type: ignore[misc]
            return place(fn(view(state), ctx) if takes_context else fn(view(state)))

    wrapper.__name__ = getattr(fn, "__name__", "handler")
    wrapper.__qualname__ = f"{getattr(fn, '__qualname__', wrapper.__name__)}[{keys}->{output}]"
    return wrapper
