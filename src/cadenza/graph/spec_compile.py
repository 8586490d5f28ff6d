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
from cadenza.graph._builder_args import StepRef
from cadenza.graph._spec_agents import add_orchestrator, add_react
from cadenza.graph._spec_context import Reported, SpecContext, stop
from cadenza.graph._spec_refs import References
from cadenza.graph._spec_workflow import check_modules, configuration, import_modules, state_type
from cadenza.graph.builder import Workflow
from cadenza.graph.registry import HandlerRegistry, handlers
from cadenza.graph.spec import StepSpec, StepType, WorkflowSpec
from cadenza.graph.spec_load import Loc, Locator, SpecError
from cadenza.graph.spec_read import MAX_SHOWN
from cadenza.resilience.limits import Bulkhead


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
    ctx = SpecContext(spec, locator, file, refs)
    check_modules(ctx, named, handler_modules)
    if imports:
        import_modules(ctx, modules)
    workflow = _Builder(ctx).build()
    ctx.raise_problems()
    try:
        workflow.compile()
    except DefinitionError as exc:
        raise SpecError(file, [ctx.locate_definition_error(exc)]) from None
    return workflow


class _Builder:
    """Builds the workflow ``ctx.spec`` describes, step by step, recording each problem in
    ``ctx`` where it was found."""

    def __init__(self, ctx: SpecContext):
        self.ctx = ctx
        self.comparisons = 20_000  # the budget of name comparisons for suggestions (~0.1 s)

    def build(self) -> Workflow:
        ctx = self.ctx
        state = state_type(ctx)
        config = configuration(ctx)
        workflow = Workflow(
            ctx.spec.name, state=state, config=config, description=ctx.spec.description or ""
        )
        self._add_steps(workflow, ctx.spec.steps, ("steps",))
        return workflow

    # -- steps -------------------------------------------------------------------------------

    def _add_steps(self, wf: Workflow, steps: Sequence[StepSpec], path: Loc) -> None:
        names = [s.name for s in steps]
        seen: dict[str, int] = {}
        for i, step in enumerate(steps):
            if step.name in seen:
                self.ctx.problem(
                    (*path, i, "name"),
                    f"duplicate step name {step.name!r} (also step {seen[step.name] + 1})",
                )
                continue
            seen[step.name] = i
            self.ctx.where.setdefault(step.name, (*path, i))
            self._add_step(wf, step, (*path, i))
        for i, step in enumerate(steps):
            for field, targets in _targets(step):
                for target in targets:
                    if target not in seen:
                        hint = self._suggest(target, seen)
                        self.ctx.problem((*path, i, field), f"unknown step {target!r}{hint}")
        if self.ctx.problems:
            return
        for i, step in enumerate(steps):
            following = names[i + 1] if i + 1 < len(names) else None
            for target in _successors(step, following):
                wf.edge(step.name, target)
        wf.start(names[0])

    def _suggest(self, target: str, names: Collection[str]) -> str:
        """A near-miss step name, while the comparisons stay few: difflib against every name
        of a file of thousands of steps, for each unknown name, would take seconds."""
        if len(self.ctx.problems) >= MAX_SHOWN or len(names) > self.comparisons:
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
                add_react(self.ctx, wf, step, path)
            elif t is StepType.ORCHESTRATOR:
                add_orchestrator(self.ctx, wf, step, path)
            else:
                self.ctx.problem(
                    path,
                    "a WORKER executes subtasks of an ORCHESTRATOR: put it in that "
                    "ORCHESTRATOR's 'workers' list",
                )
        except Reported:
            pass  # already recorded where it was found
        except DefinitionError as exc:
            self.ctx.problem(path, exc.message)

    def _task_options(self, step: StepSpec, path: Loc) -> dict[str, Any]:
        return {
            "timeout": step.timeout,
            "retry": self.ctx.retry(step),
            "compensate": self.ctx.ref(step.compensate, (*path, "compensate")),
            "breaker": step.breaker,
            "fallback": self.ctx.ref(step.fallback, (*path, "fallback")),
            "bulkhead": Bulkhead(step.bulkhead.name, step.bulkhead.limit)
            if step.bulkhead
            else None,
        }

    def _handler(self, step: StepSpec, path: Loc) -> Callable[..., Any]:
        named = step.handler is not None  # an empty handler is an error, not the step's name
        fn = self.ctx.ref(
            step.handler if named else step.name, (*path, "handler" if named else "name")
        )
        if fn is None:
            stop()
        if step.input is None and step.output is None:
            return fn
        return _mapped(fn, step.input, step.output)

    def _conditional(self, wf: Workflow, step: StepSpec) -> None:
        if step.routes is not None:
            routes: dict[StepRef, str | Callable[..., Any]] = {k: v for k, v in step.routes.items()}
            wf.conditional(step.name, routes, default=step.default)
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
            found = self.ctx.refs.registry.branches(step.name)
            if not found:
                single = self.ctx.ref(step.name, (*path, "name"))
                found = [single] if single is not None else []
            branches = found
        if not branches:
            stop()
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
            fn = self.ctx.ref(branch, path)
            if fn is None:
                stop()
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
        if self.ctx.problems:
            stop()
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
            callback=step.callback,
            timeout=step.timeout,
            retry=self.ctx.retry(step),
            breaker=step.breaker,
        )


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
