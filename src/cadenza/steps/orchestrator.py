"""ORCHESTRATOR and WORKER: a planner splits the task into subtasks at run time, workers
chosen by capability execute them concurrently (at most ``max_concurrent`` at once, each
after the subtasks it depends on), and a synthesiser combines the results.

The plan (``research/plan``), every subtask's outcome (``research[2]/writer``) and the
synthesis (``research/synthesize``) are durable sub-steps: a resumed run does not plan again
or redo finished subtasks. A subtask that still fails after its worker's retries fails the
step, or (``on_subtask_failure="report"``) is a result marked failed, and the subtasks that
depend on it are reported as not run."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pydantic_core

from cadenza.agents._react import AgentLimitExceeded, as_text
from cadenza.agents._react_plan import (
    SYNTHESIZER_PROMPT,
    check_plan,
    plan_model,
    planner_messages,
    synthesizer_request,
    worker_request,
)
from cadenza.agents.model import Message, ModelResponse
from cadenza.core.context import ExecutionContext
from cadenza.core.errors import StepFailed
from cadenza.core.events import EventType
from cadenza.graph.ir import Handler, OrchestratorSpec, Step, WorkerSpec
from cadenza.runtime.calls import BadStepResult, call_handler
from cadenza.runtime.scope import Scope
from cadenza.steps.react import fail_step, gather_all, model_call, run_agent
from cadenza.steps.task import run_attempts

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution


async def execute_orchestrator(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    spec = step.agent
    assert isinstance(spec, OrchestratorSpec)
    started = run.clock.now()
    input_key = step.options.get("input_key")
    if input_key is not None and input_key not in scope.state:
        raise StepFailed(
            path, f"input key {input_key!r} is not in the state", error_type="KeyError"
        )
    task = as_text(scope.state[input_key]) if input_key is not None else ""
    subtasks = await _plan(run, step, scope, path, spec, task)
    results = await _dispatch(run, step, scope, path, spec, subtasks, task)
    update: dict[str, Any] = {step.options["results_key"]: results}
    if spec.synthesizer is not None:
        answer = await _synthesize(run, step, scope, path, spec, task, results)
        update[step.options["output_key"]] = answer
    failed = sum(r["status"] != "ok" for r in results)
    data = {"update": update, "started_at": started, "subtasks": len(results), "failed": failed}
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=1, data=data)


async def execute_worker(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    """Execute the subtask in ``scope.item`` and record its outcome (``result``)."""
    spec = step.agent
    assert isinstance(spec, WorkerSpec)
    subtask = scope.item
    if not isinstance(subtask, dict) or "instructions" not in subtask:
        raise StepFailed(path, "a WORKER executes a subtask of an ORCHESTRATOR, and got none")
    base = {
        "id": subtask.get("id"),
        "capability": subtask.get("capability"),
        "worker": step.name,
        "instructions": subtask["instructions"],
    }
    if spec.handler is not None:
        handler = spec.handler

        async def attempt(ctx: ExecutionContext) -> tuple[None, dict[str, Any]]:
            value = await call_handler(
                run, handler, dict(scope.state), ctx, step.policy.timeout, step.policy.bulkhead
            )
            _check_json(value, "a worker")
            return None, {"result": {**base, "status": "ok", "result": value}}

        await run_attempts(run, step, scope, path, attempt)
        return
    assert spec.agent is not None
    started = run.clock.now()
    system = [Message.system(spec.agent.system)] if spec.agent.system else []
    request = Message.user(worker_request(subtask))
    try:
        outcome = await run_agent(run, step, scope, path, spec.agent, [*system, request])
    except AgentLimitExceeded as exc:
        await fail_step(run, scope, path, exc, started)
        raise
    data = {
        "result": {**base, "status": "ok", "result": outcome.answer},
        "agent_usage": outcome.totals.data(),
        "started_at": started,
    }
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=1, data=data)


async def _plan(
    run: RunExecution, step: Step, scope: Scope, path: str, spec: OrchestratorSpec, task: str
) -> list[dict[str, Any]]:
    ppath = f"{path}/plan"
    recorded = run.progress.done.get(ppath)
    if recorded is not None:
        return list(recorded["result"])
    capabilities = [_worker(w).capability for w in spec.workers]
    if isinstance(spec.planner, Handler):
        planner = spec.planner

        async def attempt(ctx: ExecutionContext) -> tuple[None, dict[str, Any]]:
            raw = await call_handler(run, planner, dict(scope.state), ctx, step.policy.timeout)
            return None, {"result": check_plan(raw, capabilities, spec.max_subtasks)}

        await run_attempts(run, step, scope, ppath, attempt)
        return list(run.progress.done[ppath]["result"])
    schema = plan_model(capabilities)
    about = [(_worker(w).capability, _worker(w).description) for w in spec.workers]
    messages = [
        Message.model_validate(m) for m in planner_messages(spec.planner_prompt, about, task)
    ]

    def parse(response: ModelResponse) -> list[dict[str, Any]]:
        raw = response.parsed
        if raw is None:
            raw = pydantic_core.from_json(response.message.content or "null")
        return check_plan(raw, capabilities, spec.max_subtasks)

    record = await model_call(
        run, step, scope, ppath, spec.planner, messages, output=schema, result=parse
    )
    return list(record["result"])


async def _dispatch(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    spec: OrchestratorSpec,
    subtasks: list[dict[str, Any]],
    task: str,
) -> list[dict[str, Any]]:
    by_capability = {_worker(w).capability: w for w in spec.workers}
    limit = asyncio.Semaphore(step.max_concurrent) if step.max_concurrent else None
    loop = asyncio.get_running_loop()
    outcomes: dict[str, asyncio.Future[dict[str, Any]]] = {
        s["id"]: loop.create_future() for s in subtasks
    }

    async def one(i: int, subtask: dict[str, Any]) -> dict[str, Any]:
        worker = by_capability[subtask["capability"]]
        wpath = f"{path}[{i}]/{worker.name}"
        recorded = run.progress.done.get(wpath)
        if recorded is not None:
            outcome: dict[str, Any] = recorded["result"]
        else:
            outcome = await execute(i, subtask, worker, wpath)
        outcomes[subtask["id"]].set_result(outcome)
        return outcome

    async def execute(i: int, subtask: dict[str, Any], worker: Step, wpath: str) -> dict[str, Any]:
        deps = [await outcomes[d] for d in subtask["depends_on"]]
        base = {k: subtask[k] for k in ("id", "capability", "instructions")}
        base["worker"] = worker.name
        broken = [d["id"] for d in deps if d["status"] != "ok"]
        if broken:
            error = f"not run: it depends on subtask {', '.join(broken)}, which failed"
            return await _report(run, scope, wpath, {**base, "status": "failed", "error": error})
        item = {**subtask, "task": task}
        if deps:
            item["inputs"] = {d["id"]: d.get("result") for d in deps}
        child = scope.child(f"{path}[{i}]", [], run.reducers, item=item, index=i)
        try:
            if limit is None:
                await execute_worker(run, worker, child, wpath)
            else:
                async with limit:
                    await execute_worker(run, worker, child, wpath)
        except StepFailed as exc:
            if spec.on_subtask_failure == "fail":
                raise StepFailed(
                    path,
                    f"subtask {subtask['id']} ({subtask['capability']}) failed: {exc.message}",
                    error_type="SubtaskFailed",
                ) from exc
            failed = {**base, "status": "failed", "error": exc.message}
            return await _report(run, scope, wpath, failed)
        return dict(run.progress.done[wpath]["result"])

    return await gather_all([one(i, s) for i, s in enumerate(subtasks)])


async def _report(
    run: RunExecution, scope: Scope, path: str, outcome: dict[str, Any]
) -> dict[str, Any]:
    """Record a subtask that failed (or could not run) as a result, so it is not redone."""
    data = {"result": outcome, "reported": True}
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=1, data=data)
    return outcome


async def _synthesize(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    spec: OrchestratorSpec,
    task: str,
    results: list[dict[str, Any]],
) -> Any:
    spath = f"{path}/synthesize"
    recorded = run.progress.done.get(spath)
    if recorded is not None:
        return recorded["result"]
    if isinstance(spec.synthesizer, Handler):
        synth = spec.synthesizer

        def combine(state: dict[str, Any], ctx: ExecutionContext) -> Any:
            if synth.wants_context:
                return synth.fn(state, results, ctx)
            return synth.fn(state, results)

        wrapped = Handler(combine, synth.is_async, wants_context=True)

        async def attempt(ctx: ExecutionContext) -> tuple[None, dict[str, Any]]:
            value = await call_handler(run, wrapped, dict(scope.state), ctx, step.policy.timeout)
            _check_json(value, "the synthesizer")
            return None, {"result": value}

        await run_attempts(run, step, scope, spath, attempt)
        return run.progress.done[spath]["result"]
    messages = [
        Message.system(spec.synthesizer_prompt or SYNTHESIZER_PROMPT),
        Message.user(synthesizer_request(task, results)),
    ]
    record = await model_call(
        run,
        step,
        scope,
        spath,
        spec.synthesizer,
        messages,
        result=lambda response: response.message.content,
    )
    return record["result"]


def _worker(step: Step) -> WorkerSpec:
    assert isinstance(step.agent, WorkerSpec)
    return step.agent


def _check_json(value: Any, who: str) -> None:
    try:
        pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise BadStepResult(
            f"{who} returned a value that cannot be stored as JSON: {exc}"
        ) from None
