"""REACT: the loop to a final answer, concurrent tool calls, limits (steps, tokens), tool
errors as observations, retried model calls, usage and cost, the transcript in the state, and
a resume that repeats nothing recorded."""

from __future__ import annotations

import asyncio
import operator
import threading
from collections import Counter
from typing import Annotated, Any, TypedDict

import pytest

from cadenza import (
    DefinitionError,
    Engine,
    ExecutionContext,
    MemoryStore,
    Message,
    Pricing,
    RetryPolicy,
    ScriptedModel,
    Workflow,
    WorkflowStatus,
    tool,
)
from cadenza.agents import run_usage


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Find an order.

    Args:
        order_id: The order number.
    """
    return {"order_id": order_id, "status": "delivered", "total": 30.0}


async def events_of(engine: Engine, run_id: str) -> list[Any]:
    return await engine.store.read_events(run_id)


async def test_tools_then_a_final_answer_with_the_transcript_in_state(engine: Engine) -> None:
    model = ScriptedModel(
        [{"tool_calls": [call("lookup_order", order_id=7)]}, "Order 7 was delivered."]
    )
    wf = Workflow("support")
    wf.react(
        "agent", model=model, tools=[lookup_order], system="You are support.", input_key="question"
    )
    result = await engine.run(wf, {"question": "Where is order 7?"})
    assert result.ok, result.error
    assert result.state["answer"] == "Order 7 was delivered."
    transcript = [Message.model_validate(m) for m in result.state["messages"]]
    assert [m.role for m in transcript] == ["user", "assistant", "tool", "assistant"]
    assert transcript[2].content == '{"order_id":7,"status":"delivered","total":30.0}'
    assert transcript[2].tool_call_id == transcript[1].tool_calls[0].id
    # The model saw the system prompt, the request, then its own call and the observation.
    first, second = model.calls
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[0].content == "You are support."
    assert [t.name for t in first.tools] == ["lookup_order"]
    assert second.messages[1:] == transcript[:3]
    paths = [e.path for e in await events_of(engine, result.run_id) if e.type == "step_completed"]
    tool_path = f"agent#1/lookup_order:{transcript[1].tool_calls[0].id}"
    assert paths == ["agent#1/model", tool_path, "agent#2/model", "agent"]


async def test_tool_calls_of_one_reply_run_concurrently(engine: Engine) -> None:
    together = asyncio.Barrier(3)
    threads = threading.Barrier(2, timeout=10)

    @tool
    async def probe(n: int) -> str:
        """Waits until every probe runs."""
        await asyncio.wait_for(together.wait(), timeout=10)  # all three, or it times out
        return f"probe {n} met the others"

    @tool
    def blocking(n: int) -> str:
        """A sync tool: waits in its thread until the other one runs."""
        threads.wait()
        return f"blocking {n} met the other"

    model = ScriptedModel(
        [
            {"tool_calls": [call("probe", n=i) for i in range(3)]},
            {"tool_calls": [call("blocking", n=i) for i in range(2)]},
            "all met",
        ]
    )
    wf = Workflow("fanout")
    wf.react("agent", model=model, tools=[probe, blocking], input_key="q")
    result = await engine.run(wf, {"q": "go"})
    assert result.ok, result.error
    observations = [m["content"] for m in result.state["messages"] if m["role"] == "tool"]
    assert observations == [
        "probe 0 met the others",
        "probe 1 met the others",
        "probe 2 met the others",
        "blocking 0 met the other",
        "blocking 1 met the other",
    ], "in call order, whatever the order they finished in"


async def test_max_steps_fails_the_step_with_a_clear_error(engine: Engine) -> None:
    model = ScriptedModel(
        rules=[lambda messages: {"tool_calls": [call("lookup_order", order_id=1)]}]
    )
    wf = Workflow("stubborn")
    wf.react("agent", model=model, tools=[lookup_order], input_key="q", max_steps=3)
    result = await engine.run(wf, {"q": "loop"})
    assert result.status is WorkflowStatus.FAILED
    assert result.error == (
        "step 'agent' failed: no final answer after max_steps=3 model calls (the last reply "
        "still calls lookup_order); raise max_steps, or end with on_max_steps='finish'"
    )
    assert len(model.calls) == 3
    events = await events_of(engine, result.run_id)
    failed = [e for e in events if e.type == "step_failed"]
    assert [(e.path, e.data["error_type"]) for e in failed] == [("agent", "MaxStepsExceeded")]
    tools_run = [e.path for e in events if e.type == "step_completed" and "tool" in e.data]
    assert len(tools_run) == 2, "the calls of the last reply are not made"


async def test_on_max_steps_finish_ends_with_the_last_reply(engine: Engine) -> None:
    model = ScriptedModel(
        rules=[
            lambda m: {"content": "still looking", "tool_calls": [call("lookup_order", order_id=1)]}
        ]
    )
    wf = Workflow("patient")
    wf.react(
        "agent",
        model=model,
        tools=[lookup_order],
        input_key="q",
        max_steps=2,
        on_max_steps="finish",
    )
    result = await engine.run(wf, {"q": "loop"})
    assert result.ok, result.error
    assert result.state["answer"] == "still looking"
    last = result.state["messages"][-1]
    assert last == {"role": "assistant", "content": "still looking"}, "no unanswered calls kept"


async def test_a_token_budget_bounds_the_whole_loop(engine: Engine) -> None:
    model = ScriptedModel(
        [
            {
                "tool_calls": [call("lookup_order", order_id=1)],
                "usage": {"input_tokens": 400, "output_tokens": 50},
            },
            {
                "tool_calls": [call("lookup_order", order_id=2)],
                "usage": {"input_tokens": 500, "output_tokens": 60},
            },
            "never reached",
        ]
    )
    wf = Workflow("budget")
    wf.react("agent", model=model, tools=[lookup_order], input_key="q", token_budget=1000)
    result = await engine.run(wf, {"q": "spend"})
    assert result.status is WorkflowStatus.FAILED
    assert "token budget exceeded: 1010 tokens in 2 model calls, over the budget of 1000" in (
        result.error or ""
    )
    assert len(model.calls) == 2
    failed = [e for e in await events_of(engine, result.run_id) if e.type == "step_failed"]
    assert failed[-1].data["error_type"] == "TokenBudgetExceeded"


async def test_tool_errors_and_unknown_tools_are_observed_by_the_model(engine: Engine) -> None:
    @tool
    def refund(order_id: int) -> str:
        """Refund an order."""
        raise RuntimeError("payments service is down")

    model = ScriptedModel(
        [
            {
                "tool_calls": [
                    call("refund", order_id=1),
                    call("teleport"),
                    call("refund", order_id="x"),
                ]
            },
            "Sorry, refunds are failing right now.",
        ]
    )
    wf = Workflow("errors")
    wf.react("agent", model=model, tools=[refund], input_key="q")
    result = await engine.run(wf, {"q": "refund 1"})
    assert result.ok, result.error
    seen = [m.content for m in model.calls[1].messages if m.role == "tool"]
    assert seen[0] == "Error: tool 'refund' raised RuntimeError: payments service is down"
    assert seen[1] == "Error: there is no tool named 'teleport' (tools: refund)"
    assert seen[2].startswith("Error: invalid arguments for tool 'refund': order_id:")
    flagged = [
        e.data.get("tool_error") for e in await events_of(engine, result.run_id) if "tool" in e.data
    ]
    assert flagged == [True, True, True]


async def test_usage_and_cost_per_call_per_step_and_per_run(engine: Engine) -> None:
    model = ScriptedModel(
        [
            {
                "tool_calls": [call("lookup_order", order_id=1)],
                "usage": {"input_tokens": 1000, "output_tokens": 100},
            },
            {"content": "done", "usage": {"input_tokens": 2000, "output_tokens": 200}},
        ],
        name="priced",
        pricing=Pricing(input_per_million=1.0, output_per_million=10.0),
    )
    wf = Workflow("costly")
    wf.react("agent", model=model, tools=[lookup_order], input_key="q")
    result = await engine.run(wf, {"q": "x"})
    assert result.ok, result.error
    events = await events_of(engine, result.run_id)
    calls = [e.data for e in events if e.type == "step_completed" and "model" in e.data]
    assert [(c["model"], c["usage"], c["cost"]) for c in calls] == [
        ("priced", {"input_tokens": 1000, "output_tokens": 100}, pytest.approx(0.002)),
        ("priced", {"input_tokens": 2000, "output_tokens": 200}, pytest.approx(0.004)),
    ]
    step = next(e for e in events if e.path == "agent" and e.type == "step_completed")
    assert step.data["agent_usage"] == {
        "input_tokens": 3000,
        "output_tokens": 300,
        "model_calls": 2,
        "tool_calls": 1,
        "cost": pytest.approx(0.006),
    }
    usage = run_usage(events)
    assert (usage.model_calls, usage.input_tokens, usage.output_tokens) == (2, 3000, 300)
    assert usage.cost == pytest.approx(0.006)
    assert usage.summary() == "2 model calls, 3000 input + 300 output tokens, $0.0060"


async def test_failed_model_calls_are_retried_by_the_step_policy(engine: Engine) -> None:
    model = ScriptedModel([{"error": "overloaded", "retryable": True}, "fine now"])
    wf = Workflow("flaky")
    wf.react(
        "agent", model=model, input_key="q", retry=RetryPolicy(max_attempts=2, initial_delay=0)
    )
    result = await engine.run(wf, {"q": "x"})
    assert result.ok, result.error
    failed = [e for e in await events_of(engine, result.run_id) if e.type == "step_failed"]
    assert [(e.path, e.attempt, e.data["retry"]) for e in failed] == [("agent#1/model", 1, True)]

    final = ScriptedModel([{"error": "invalid api key"}, "never"])
    wf2 = Workflow("broken")
    wf2.react(
        "agent", model=final, input_key="q", retry=RetryPolicy(max_attempts=5, initial_delay=0)
    )
    broken = await engine.run(wf2, {"q": "x"})
    assert broken.status is WorkflowStatus.FAILED
    assert broken.error == "step 'agent#1/model' failed: invalid api key"
    assert len(final.calls) == 1, "a non-retryable model error is not retried"
    failed = [e for e in await events_of(engine, broken.run_id) if e.type == "step_failed"]
    assert failed[0].data["error_type"] == "ModelError"


class Chat(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    answer: str


async def test_a_conversation_in_state_goes_on_through_an_append_reducer(engine: Engine) -> None:
    model = ScriptedModel(rules=[lambda m: f"answer {sum(x.role == 'user' for x in m)}"])
    wf = Workflow("chat", state=Chat)
    wf.react("agent", model=model)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    history.append({"role": "user", "content": "how are you?"})
    result = await engine.run(wf, {"messages": history})
    assert result.ok, result.error
    assert result.state["messages"] == [*history, {"role": "assistant", "content": "answer 2"}]
    assert [m.content for m in model.calls[0].messages] == ["hi", "hello", "how are you?"]

    empty = await engine.run(wf, {})
    assert empty.status is WorkflowStatus.FAILED
    assert "the agent has nothing to answer: state['messages'] holds no messages" in (
        empty.error or ""
    )

    bad = await engine.run(wf, {"messages": [{"role": "robot", "content": "beep"}]})
    assert bad.status is WorkflowStatus.FAILED
    assert "state['messages'][0] is not a chat message: role: Input should be" in (bad.error or "")


async def test_agents_in_map_branches_keep_their_own_sub_steps(engine: Engine) -> None:
    model = ScriptedModel(
        rules=[
            (r"^order (\d+)$", {"tool_calls": [call("lookup_order", order_id=5)]}),
            (r"delivered", "delivered"),
        ]
    )
    wf = Workflow("many")

    def ask(state: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
        return {"q": f"order {ctx.item}"}

    inner = Workflow("inner")
    inner.task(ask)
    inner.react("agent", model=model, tools=[lookup_order], input_key="q", messages_key=None)
    wf.map("each", items="orders", branch=inner, max_concurrent=2)
    result = await engine.run(wf, {"orders": [1, 2, 3]})
    assert result.ok, result.error
    completed = Counter(
        e.path for e in await events_of(engine, result.run_id) if e.type == "step_completed"
    )
    assert completed["each[2]/agent#1/model"] == 1 and completed["each[2]/agent"] == 1
    assert all(n == 1 for n in completed.values())


async def test_a_resumed_loop_repeats_no_recorded_model_call_or_tool_call() -> None:
    store = MemoryStore()
    gate = asyncio.Event()
    effects: list[str] = []

    def build(block: bool) -> tuple[Workflow, ScriptedModel]:
        @tool
        async def charge(amount: int, ctx: ExecutionContext) -> str:
            """Charge a card."""
            effects.append(ctx.idempotency_key.split(":", 1)[1])
            if block and amount == 2:
                await gate.wait()  # the process "dies" here
            return f"charged {amount}"

        model = ScriptedModel(
            rules=[
                (r"^pay$", {"tool_calls": [call("charge", amount=1)]}),
                (
                    r"^charged 1$",
                    {"tool_calls": [call("charge", amount=2), call("charge", amount=3)]},
                ),
                (r"^charged [23]$", "paid"),
            ]
        )
        wf = Workflow("payer")
        wf.react("agent", model=model, tools=[charge], input_key="q")
        return wf, model

    first_wf, first_model = build(block=True)
    async with Engine(store) as first:
        run_id = await first.start(first_wf, {"q": "pay"})
        for _ in range(500):  # until the third charge is recorded while the second hangs
            done = [e.path for e in await store.read_events(run_id) if "tool" in e.data]
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(done) == 2 and len(effects) == 3
    assert len(first_model.calls) == 2
    second_wf, second_model = build(block=False)
    async with Engine(store) as second:
        result = await second.resume(run_id, second_wf)
    assert result.ok, result.error
    assert result.state["answer"] == "paid"
    assert len(second_model.calls) == 1, "recorded model calls were replayed from the log"
    counts = Counter(effects)
    blocked = next(k for k in counts if k.startswith("agent#2/charge:") and counts[k] == 2)
    assert blocked.endswith("_0"), "the interrupted call ran again, with the same key"
    assert sorted(counts.values()) == [1, 1, 2]


def test_bad_react_definitions_are_refused() -> None:
    wf = Workflow("bad")
    with pytest.raises(DefinitionError, match=r"steps.a.model: expected a chat model"):
        wf.react("a", model="gpt-4o", input_key="q")
    with pytest.raises(DefinitionError, match="max_steps must be a positive integer"):
        wf.react("a", model=ScriptedModel(), input_key="q", max_steps=0)
    with pytest.raises(DefinitionError, match="give input_key"):
        wf.react("a", model=ScriptedModel(), messages_key=None)
    with pytest.raises(DefinitionError, match="two tools are named 'lookup_order'"):
        wf.react("a", model=ScriptedModel(), input_key="q", tools=[lookup_order, lookup_order])

    class Narrow(TypedDict):
        q: str

    typed = Workflow("typed", state=Narrow)
    typed.react("a", model=ScriptedModel(), input_key="q")
    with pytest.raises(DefinitionError, match="step writes keys 'answer', 'messages'"):
        typed.compile()
