"""The builder's verbs for agent steps: ``react``, ``worker`` and ``orchestrator``.
:class:`cadenza.graph.builder.Workflow` has them; they add to the workflow's
:class:`~cadenza.graph._draft.Draft` (its steps, and the workers its orchestrators may use),
the only state they touch."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from cadenza.core.errors import DefinitionError
from cadenza.graph._builder_args import _agent, _key, _model, _policy, _positive
from cadenza.graph._draft import Draft
from cadenza.graph.handlers import make_handler
from cadenza.graph.ir import Handler, OrchestratorSpec, Step, StepKind, WorkerSpec
from cadenza.resilience.retry import RetryPolicy


class AgentVerbs:
    """The verbs for REACT, WORKER and ORCHESTRATOR steps."""

    _draft: Draft

    def react(
        self,
        name: str,
        *,
        model: Any,
        tools: Sequence[Any] = (),
        system: str = "",
        max_steps: int = 10,
        token_budget: int | None = None,
        messages_key: str | None = "messages",
        output_key: str | None = "answer",
        input_key: str | None = None,
        on_max_steps: str = "fail",
        temperature: float | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float = 0.0,
        retry: RetryPolicy | None = None,
    ) -> str:
        """A REACT step: ``model`` reasons and calls ``tools`` (functions or :class:`Tool`
        values; several calls asked in one reply run concurrently) until it answers without
        calling any, at most ``max_steps`` model calls (then the step fails, or with
        ``on_max_steps="finish"`` ends with the last reply). Every model call and tool call is
        a durable sub-step: a resumed run does not repeat them.

        The conversation is ``system``, the messages already in ``state[messages_key]``, and
        a user message with ``state[input_key]`` when ``input_key`` is given. The new messages
        are stored in ``messages_key`` (through its reducer when it has one, else as the
        whole list) and the final answer in ``output_key``. ``token_budget`` bounds the
        tokens of the whole loop. ``timeout`` bounds each model call; ``retries``/``retry``
        retry failed model calls (a :class:`ModelError` that is not ``retryable`` is final)."""
        path = f"steps.{name}"
        agent = _agent(
            model,
            tools,
            system=system,
            max_steps=max_steps,
            token_budget=token_budget,
            temperature=temperature,
            on_max_steps=on_max_steps,
            path=path,
        )
        keys = {
            "messages_key": _key(messages_key, f"{path}.messages_key"),
            "output_key": _key(output_key, f"{path}.output_key"),
            "input_key": _key(input_key, f"{path}.input_key"),
        }
        if keys["messages_key"] is None and keys["input_key"] is None:
            raise DefinitionError(
                "give input_key (the state key holding the request) or messages_key (the "
                "conversation so far), or both",
                path=path,
            )
        writes = {k for k in (keys["messages_key"], keys["output_key"]) if k}
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.REACT,
                policy=_policy(timeout, retries, retry_delay, retry, path),
                writes=frozenset(writes),
                options=keys,
                agent=agent,
            )
        )

    def worker(
        self,
        name: str,
        *,
        capability: str,
        handler: Callable[..., Any] | None = None,
        model: Any = None,
        tools: Sequence[Any] = (),
        system: str = "",
        description: str = "",
        max_steps: int = 10,
        token_budget: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float = 0.0,
        retry: RetryPolicy | None = None,
    ) -> str:
        """Declare a WORKER for the orchestrators of this workflow: it executes the subtasks
        whose ``capability`` it declares. Either a ``handler`` ``fn(state, ctx)`` (the
        subtask, a dict with ``id``, ``capability``, ``instructions`` and the results of the
        subtasks it depends on under ``inputs``, is ``ctx.item``; what it returns is the
        subtask's result), or an agent: ``model`` with ``tools`` and a ``system`` prompt (its
        role), running a small REACT loop. ``retries``/``retry`` retry a failed handler (or
        an agent's failed model calls); ``timeout`` bounds each attempt. Declare workers
        before the orchestrator that uses them; they are not steps of the flow."""
        path = f"workers.{name}"
        if not isinstance(capability, str) or not capability.strip():
            raise DefinitionError("a worker declares a capability", path=f"{path}.capability")
        if (handler is None) == (model is None):
            raise DefinitionError(
                "give a worker a handler (a function) or a model (an agent), not both",
                path=path,
            )
        spec = WorkerSpec(capability=capability.strip(), description=description)
        if handler is not None:
            made = make_handler(handler, path=f"{path}.handler")
            if not made.wants_context:
                raise DefinitionError(
                    "a worker function takes (state, ctx): its subtask is ctx.item",
                    path=f"{path}.handler",
                )
            spec = WorkerSpec(spec.capability, description, handler=made)
        else:
            agent = _agent(
                model,
                tools,
                system=system,
                max_steps=max_steps,
                token_budget=token_budget,
                temperature=temperature,
                on_max_steps="fail",
                path=path,
            )
            spec = WorkerSpec(spec.capability, description, agent=agent)
        if name in self._draft.workers:
            raise DefinitionError(f"duplicate worker name {name!r}", path=path)
        step = Step(
            name=name,
            kind=StepKind.WORKER,
            handler=spec.handler,
            policy=_policy(timeout, retries, retry_delay, retry, path),
            agent=spec,
        )
        return self._draft.add_worker(step, path)

    def orchestrator(
        self,
        name: str,
        *,
        planner: Any,
        workers: Sequence[str] | None = None,
        synthesizer: Any = None,
        max_concurrent: int | None = None,
        on_subtask_failure: str = "fail",
        input_key: str | None = "task",
        output_key: str | None = "answer",
        results_key: str = "results",
        planner_prompt: str = "",
        synthesizer_prompt: str = "",
        max_subtasks: int = 20,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float = 0.0,
        retry: RetryPolicy | None = None,
    ) -> str:
        """An ORCHESTRATOR step. ``planner`` splits the task (``state[input_key]``) into
        subtasks at run time: a chat model (asked for a structured plan) or a function
        ``fn(state[, ctx])`` returning a list of ``{"capability", "instructions", "id"?,
        "depends_on"?}``. Each subtask goes to the worker declaring its capability (``workers``
        names them; default: every worker declared so far); they run concurrently, at most
        ``max_concurrent`` at once, a subtask after those it ``depends_on``. Every subtask's
        result is durable. A subtask that still fails after its worker's retries fails the
        step (``on_subtask_failure="fail"``) or is reported in the results as failed
        (``"report"``). The results (in plan order) go to ``results_key``; ``synthesizer``
        (a model, or ``fn(state, results[, ctx])``) combines them into ``output_key``.
        ``retries``/``timeout`` apply to the planner and synthesizer calls."""
        path = f"steps.{name}"
        pool = self._draft.workers
        chosen = list(pool) if workers is None else workers
        if isinstance(chosen, str) or not chosen:
            raise DefinitionError(
                "an orchestrator needs workers: declare them with wf.worker(...) first, and "
                "list their names (workers=[...])",
                path=f"{path}.workers",
            )
        steps: list[Step] = []
        owners: dict[str, str] = {}
        for i, ref in enumerate(chosen):
            if ref not in pool:
                known = ", ".join(pool) or "none"
                raise DefinitionError(
                    f"no worker named {ref!r} (declared: {known}); declare it with wf.worker "
                    "before the orchestrator",
                    path=f"{path}.workers[{i}]",
                )
            worker = pool[ref]
            assert isinstance(worker.agent, WorkerSpec)
            capability = worker.agent.capability
            if capability in owners:
                raise DefinitionError(
                    f"workers {owners[capability]!r} and {ref!r} both declare capability "
                    f"{capability!r}; a subtask must find one worker",
                    path=f"{path}.workers[{i}]",
                )
            owners[capability] = ref
            steps.append(worker)
        if on_subtask_failure not in ("fail", "report"):
            raise DefinitionError(
                f"on_subtask_failure is 'fail' or 'report', got {on_subtask_failure!r}",
                path=f"{path}.on_subtask_failure",
            )
        _positive(max_subtasks, f"{path}.max_subtasks")
        keys = {
            "input_key": _key(input_key, f"{path}.input_key"),
            "output_key": _key(output_key, f"{path}.output_key") if synthesizer else None,
            "results_key": _key(results_key, f"{path}.results_key", optional=False),
        }
        spec = OrchestratorSpec(
            planner=_planner(planner, f"{path}.planner"),
            workers=tuple(steps),
            synthesizer=_synthesizer(synthesizer, f"{path}.synthesizer"),
            planner_prompt=planner_prompt,
            synthesizer_prompt=synthesizer_prompt,
            on_subtask_failure=on_subtask_failure,
            max_subtasks=max_subtasks,
        )
        writes = {k for k in (keys["output_key"], keys["results_key"]) if k}
        return self._draft.add(
            Step(
                name=name,
                kind=StepKind.ORCHESTRATOR,
                policy=_policy(timeout, retries, retry_delay, retry, path),
                writes=frozenset(writes),
                max_concurrent=_positive(max_concurrent, f"{path}.max_concurrent"),
                options=keys,
                agent=spec,
            )
        )


def _planner(planner: Any, path: str) -> Handler | Any:
    if planner is None:
        raise DefinitionError("an orchestrator needs a planner (a model or a function)", path=path)
    if callable(planner) and not callable(getattr(planner, "chat", None)):
        return make_handler(planner, path=path)
    return _model(planner, path)


def _synthesizer(synthesizer: Any, path: str) -> Handler | Any | None:
    if synthesizer is None:
        return None
    if callable(synthesizer) and not callable(getattr(synthesizer, "chat", None)):
        made = make_handler(synthesizer, path=path)
        try:
            count = len(inspect.signature(synthesizer).parameters)
        except (TypeError, ValueError):
            count = 0
        if count < 2:
            raise DefinitionError("a synthesizer function takes (state, results[, ctx])", path=path)
        return Handler(made.fn, made.is_async, wants_context=count >= 3)
    return _model(synthesizer, path)
