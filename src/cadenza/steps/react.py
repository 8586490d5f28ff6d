"""REACT: a model reasons and acts (calls tools) until it gives a final answer.

Every model call and every tool call is a durable sub-step of the step's path
(``agent#2/model``, ``agent#2/refund:call_7``): a resumed run replays recorded replies and
observations from its log instead of repeating them, and a tool call interrupted by a crash
runs again with the same ``ctx.idempotency_key``. The conversation is rebuilt from those
records in call order, so it is the same however often the run resumed. Failed model calls
are retried by the step's retry policy; tool errors are observations for the model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cadenza.agents._react import (
    AgentLimitExceeded,
    Totals,
    as_text,
    decide,
    history,
    model_path,
    tool_paths,
    with_call_ids,
)
from cadenza.agents.model import Message, ModelError, ModelResponse, OutputSchema, ToolCall, Usage
from cadenza.agents.tools import Tool
from cadenza.core.context import ExecutionContext
from cadenza.core.errors import StepFailed
from cadenza.core.events import EventType
from cadenza.graph.ir import AgentSpec, Step
from cadenza.resilience.retry import NonRetryableError
from cadenza.runtime.calls import context
from cadenza.runtime.scheduler import first_line
from cadenza.runtime.scope import Scope
from cadenza.steps.task import run_attempts

if TYPE_CHECKING:
    from cadenza.runtime.run import RunExecution

T = TypeVar("T")


@dataclass(slots=True)
class AgentOutcome:
    answer: str
    messages: list[Message]  # what the loop added: replies and observations, in order
    totals: Totals = field(default_factory=Totals)
    stopped: str | None = None  # "max_steps" when it ended there by choice


async def execute_react(run: RunExecution, step: Step, scope: Scope, path: str) -> None:
    agent = step.agent
    assert isinstance(agent, AgentSpec)
    started = run.clock.now()
    messages_key = step.options.get("messages_key")
    output_key = step.options.get("output_key")
    input_key = step.options.get("input_key")
    past = history(scope.state, messages_key, path)
    added: list[Message] = []
    if input_key is not None:
        if input_key not in scope.state:
            raise StepFailed(
                path, f"input key {input_key!r} is not in the state", error_type="KeyError"
            )
        added.append(Message.user(as_text(scope.state[input_key])))
    if not past and not added:
        raise StepFailed(
            path,
            f"the agent has nothing to answer: state[{messages_key!r}] holds no messages and "
            "the step has no input_key",
            error_type="KeyError",
        )
    system = [Message.system(agent.system)] if agent.system else []
    try:
        outcome = await run_agent(run, step, scope, path, agent, [*system, *past, *added])
    except AgentLimitExceeded as exc:
        await fail_step(run, scope, path, exc, started)
        raise
    update: dict[str, Any] = {}
    if output_key is not None:
        update[output_key] = outcome.answer
    if messages_key is not None:
        new = [m.to_json() for m in (*added, *outcome.messages)]
        if messages_key in run.reducers:
            update[messages_key] = new
        else:
            update[messages_key] = [*(scope.state.get(messages_key) or []), *new]
    data: dict[str, Any] = {
        "update": update,
        "started_at": started,
        "agent_usage": outcome.totals.data(),
    }
    if outcome.stopped:
        data["stopped"] = outcome.stopped
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=1, data=data)


async def run_agent(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    agent: AgentSpec,
    messages: Sequence[Message],
) -> AgentOutcome:
    """The loop: model call, then the tool calls it asked for (concurrently), until an
    answer or a limit (:class:`AgentLimitExceeded`)."""
    tools: dict[str, Tool] = {t.name: t for t in agent.tools}
    specs = [t.spec for t in agent.tools]
    transcript = list(messages)
    outcome = AgentOutcome(answer="", messages=[])
    pricing = getattr(agent.model, "pricing", None)
    for turn in range(1, agent.max_steps + 1):
        record = await model_call(
            run,
            step,
            scope,
            model_path(path, turn),
            agent.model,
            transcript,
            tools=specs,
            temperature=agent.temperature,
            call_ids=f"call_{turn}_",
        )
        reply = Message.model_validate(record["reply"])
        outcome.totals.add_call(Usage.model_validate(record["usage"]), pricing)
        transcript.append(reply)
        outcome.messages.append(reply)
        decision = decide(
            reply,
            turn,
            max_steps=agent.max_steps,
            token_budget=agent.token_budget,
            on_max_steps=agent.on_max_steps,
            totals=outcome.totals,
        )
        if decision.kind == "fail":
            raise AgentLimitExceeded(path, decision.reason, error_type=decision.error_type)
        if decision.kind != "act":
            outcome.answer = reply.content
            if decision.kind == "finish":  # no observations will answer its last calls
                outcome.messages[-1] = Message.assistant(reply.content)
                outcome.stopped = "max_steps"
            return outcome
        paths = tool_paths(path, turn, reply.tool_calls)
        observations = await gather_all(
            [
                tool_call(run, step, scope, p, call, tools)
                for p, call in zip(paths, reply.tool_calls, strict=True)
            ]
        )
        outcome.totals.tool_calls += len(observations)
        transcript.extend(observations)
        outcome.messages.extend(observations)
    raise AssertionError("decide() ends the loop at max_steps")  # pragma: no cover


async def model_call(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    model: Any,
    messages: Sequence[Message],
    *,
    tools: Sequence[Any] = (),
    output: OutputSchema | None = None,
    temperature: float | None = None,
    call_ids: str = "call_",
    result: Callable[[ModelResponse], Any] | None = None,
) -> dict[str, Any]:
    """One model call as a durable sub-step at ``path``, retried by the step's policy; the
    record (``reply``, ``usage`` and ``result(response)`` when given) comes from the log when
    the call is already recorded. ``result`` may raise to reject an answer (retried)."""
    recorded = run.progress.done.get(path)
    if recorded is not None:
        return recorded
    sent = list(messages)

    async def attempt(ctx: ExecutionContext) -> tuple[None, dict[str, Any]]:
        call = model.chat(sent, tools=tools, output=output, temperature=temperature)
        timeout = step.policy.timeout
        try:
            async with run.limit:
                response = await (asyncio.wait_for(call, timeout) if timeout else call)
        except ModelError as exc:
            if not exc.retryable:
                raise _Final(exc) from exc
            raise
        if not isinstance(response, ModelResponse) or response.message.role != "assistant":
            raise _Final(ModelError(f"{model.name} did not answer with an assistant message"))
        reply = with_call_ids(response.message, call_ids)
        data: dict[str, Any] = {
            "reply": reply.to_json(),
            "usage": response.usage.model_dump(),
            "model": str(getattr(model, "name", "")),
        }
        pricing = getattr(model, "pricing", None)
        if pricing is not None:
            data["cost"] = pricing.cost(response.usage)
        if result is not None:
            data["result"] = result(response)
        return None, data

    await run_attempts(run, step, scope, path, attempt, _describe)
    return run.progress.done[path]


async def tool_call(
    run: RunExecution,
    step: Step,
    scope: Scope,
    path: str,
    call: ToolCall,
    tools: dict[str, Tool],
) -> Message:
    """One tool call as a durable sub-step: its observation, from the log when recorded."""
    recorded = run.progress.done.get(path)
    if recorded is not None:
        return Message.model_validate(recorded["reply"])
    run.announce(EventType.STEP_STARTED, path, scope=scope, attempt=1)
    started = run.clock.now()
    found = tools.get(call.name)
    if found is None:
        known = ", ".join(tools) or "none"
        content, error = f"Error: there is no tool named {call.name!r} (tools: {known})", True
    else:
        ctx = context(run, scope, path, step.name, 1)
        async with run.limit:
            outcome = await found.run(call.arguments, ctx, executor=run.thread_pool)
        content, error = outcome.content, outcome.error
    message = Message.tool(call, content)
    data: dict[str, Any] = {"reply": message.to_json(), "tool": call.name, "started_at": started}
    if error:
        data["tool_error"] = True
    await run.commit(EventType.STEP_COMPLETED, path, scope=scope, attempt=1, data=data)
    return message


async def fail_step(
    run: RunExecution, scope: Scope, path: str, exc: StepFailed, started: float
) -> None:
    """Record a failure that no retry can fix (a limit) at ``path``."""
    data = {
        "error": exc.message,
        "error_type": exc.error_type,
        "retry": False,
        "started_at": started,
    }
    await run.commit(EventType.STEP_FAILED, path, scope=scope, attempt=1, data=data)


async def gather_all(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently and return the results in order; the first error cancels the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        return [await t for t in tasks]
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class _Final(NonRetryableError):
    """A model error another attempt cannot fix (the step's retry policy leaves it alone)."""

    def __init__(self, error: ModelError) -> None:
        super().__init__(first_line(error))
        self.error = error


def _describe(exc: Exception, data: dict[str, Any]) -> None:
    if isinstance(exc, _Final):
        data["error_type"] = type(exc.error).__name__
