"""Compiling the agent step types of a workflow file (REACT, ORCHESTRATOR and its WORKERs):
models, tools, planners and synthesizers resolved by name, problems located in the file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_context import SpecContext, stop
from cadenza.graph._spec_refs import is_unimported, unimported_tool
from cadenza.graph.builder import Workflow
from cadenza.graph.spec import StepSpec
from cadenza.graph.spec_load import Loc


def add_react(ctx: SpecContext, wf: Workflow, step: StepSpec, path: Loc) -> None:
    model = _model(ctx, step.model or "", (*path, "model"))
    tools = _tools(ctx, step, path)
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
        retry=ctx.retry(step),
    )


def add_orchestrator(ctx: SpecContext, wf: Workflow, step: StepSpec, path: Loc) -> None:
    names: list[str] = []
    for j, worker in enumerate(step.workers or []):
        names.append(_worker(ctx, wf, worker, (*path, "workers", j)))
    planner = _function_or_model(ctx, step.planner or "", (*path, "planner"))
    synthesizer = (
        _function_or_model(ctx, step.synthesizer, (*path, "synthesizer"))
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
        retry=ctx.retry(step),
    )


def _worker(ctx: SpecContext, wf: Workflow, step: StepSpec, path: Loc) -> str:
    options: dict[str, Any] = {
        "capability": step.capability or "",
        "description": step.description or "",
        "timeout": step.timeout,
        "retry": ctx.retry(step),
    }
    if step.handler is not None:
        fn = ctx.ref(step.handler, (*path, "handler"))
        if fn is None:
            stop()
        options["handler"] = fn
    else:
        options.update(
            model=_model(ctx, step.model or "", (*path, "model")),
            tools=_tools(ctx, step, path),
            system=step.system_prompt or "",
            max_steps=step.max_steps or 10,
            token_budget=step.token_budget,
            temperature=step.temperature,
        )
    try:
        return wf.worker(step.name, **options)
    except DefinitionError as exc:
        ctx.problem(path, exc.message)
        stop()


def _tools(ctx: SpecContext, step: StepSpec, path: Loc) -> list[Any]:
    from cadenza.agents.tools import as_tool

    found: list[Any] = []
    for i, ref in enumerate(step.tools or []):
        fn = ctx.ref(ref, (*path, "tools", i))
        if fn is None:
            continue
        try:
            found.append(unimported_tool(ref, i) if is_unimported(fn) else as_tool(fn))
        except DefinitionError as exc:
            ctx.problem((*path, "tools", i), exc.message)
    if len(found) != len(step.tools or []):
        stop()
    return found


def _model(ctx: SpecContext, ref: str, path: Loc) -> Any:
    try:
        return ctx.refs.model(ref)
    except DefinitionError as exc:
        ctx.problem(path, exc.message)
        stop()


def _function_or_model(ctx: SpecContext, ref: str, path: Loc) -> Callable[..., Any] | Any:
    """A handler by name or import path, else a model by name or spec."""
    try:
        return ctx.refs.function_or_model(ref)
    except DefinitionError as exc:
        ctx.problem(path, exc.message)
        stop()
