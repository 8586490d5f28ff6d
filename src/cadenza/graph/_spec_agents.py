"""Compiling the agent step types of a workflow file (REACT, ORCHESTRATOR and its WORKERs):
models, tools, planners and synthesizers resolved by name, problems located in the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_refs import is_unimported, unimported_tool
from cadenza.graph.spec import StepSpec

if TYPE_CHECKING:
    from cadenza.graph.builder import Workflow
    from cadenza.graph.spec_compile import _Builder
    from cadenza.graph.spec_load import Loc


def add_react(b: _Builder, wf: Workflow, step: StepSpec, path: Loc) -> None:
    model = _model(b, step.model or "", (*path, "model"))
    tools = _tools(b, step, path)
    wf.react(
        step.name,
        model=model,
        tools=tools,
        system=step.system_prompt or "",
        max_steps=step.max_steps or step.max_iterations or 10,
        token_budget=step.token_budget,
        messages_key=step.messages_key or "messages",
        output_key=step.output if isinstance(step.output, str) else "answer",
        input_key=step.input_key,
        on_max_steps=step.on_max_steps or "fail",
        temperature=step.temperature,
        timeout=step.timeout,
        retry=b._task_options(step, path)["retry"],
    )


def add_orchestrator(b: _Builder, wf: Workflow, step: StepSpec, path: Loc) -> None:
    names: list[str] = []
    for j, worker in enumerate(step.workers or []):
        names.append(_worker(b, wf, worker, (*path, "workers", j)))
    planner = _function_or_model(b, step.planner or "", (*path, "planner"))
    synthesizer = (
        _function_or_model(b, step.synthesizer, (*path, "synthesizer"))
        if step.synthesizer
        else None
    )
    wf.orchestrator(
        step.name,
        planner=planner,
        workers=names,
        synthesizer=synthesizer,
        max_concurrent=step.max_concurrent,
        on_subtask_failure=step.on_subtask_failure or "fail",
        input_key=step.input_key or "task",
        output_key=step.output if isinstance(step.output, str) else "answer",
        results_key=step.results_key or "results",
        planner_prompt=step.planner_prompt or "",
        synthesizer_prompt=step.synthesizer_prompt or "",
        max_subtasks=step.max_subtasks or 20,
        timeout=step.timeout,
        retry=b._task_options(step, path)["retry"],
    )


def _worker(b: _Builder, wf: Workflow, step: StepSpec, path: Loc) -> str:
    options: dict[str, Any] = {
        "capability": step.capability or "",
        "description": step.description or "",
        "timeout": step.timeout,
        "retry": b._task_options(step, path)["retry"],
    }
    if step.handler is not None:
        fn = b._ref(step.handler, (*path, "handler"))
        if fn is None:
            _stop()
        options["handler"] = fn
    else:
        options.update(
            model=_model(b, step.model or "", (*path, "model")),
            tools=_tools(b, step, path),
            system=step.system_prompt or "",
            max_steps=step.max_steps or 10,
            token_budget=step.token_budget,
            temperature=step.temperature,
        )
    try:
        return wf.worker(step.name, **options)
    except DefinitionError as exc:
        b.problem(path, exc.message)
        _stop()


def _tools(b: _Builder, step: StepSpec, path: Loc) -> list[Any]:
    from cadenza.agents.tools import as_tool

    found: list[Any] = []
    for i, ref in enumerate(step.tools or []):
        fn = b._ref(ref, (*path, "tools", i))
        if fn is None:
            continue
        try:
            found.append(unimported_tool(ref, i) if is_unimported(fn) else as_tool(fn))
        except DefinitionError as exc:
            b.problem((*path, "tools", i), exc.message)
    if len(found) != len(step.tools or []):
        _stop()
    return found


def _model(b: _Builder, ref: str, path: Loc) -> Any:
    try:
        return b.refs.model(ref)
    except DefinitionError as exc:
        b.problem(path, exc.message)
        _stop()


def _function_or_model(b: _Builder, ref: str, path: Loc) -> Callable[..., Any] | Any:
    """A handler by name or import path, else a model by name or spec."""
    try:
        return b.refs.function_or_model(ref)
    except DefinitionError as exc:
        b.problem(path, exc.message)
        _stop()


def _stop() -> NoReturn:
    from cadenza.graph.spec_compile import _Reported

    raise _Reported
