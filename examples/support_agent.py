"""A customer-support agent (REACT) that looks orders up and refunds them.

The model reasons and calls tools until it can answer: ``lookup_order`` (several orders are
looked up at once, concurrently) and ``refund``, which is idempotent: the payments ledger is
keyed by the tool call's idempotency key, so a refund that runs again after a crash pays
nothing twice. Every model call and tool call is recorded; ``cadenza runs show RUN`` prints
them with the tokens and cost the run used.

Offline (the default) a ScriptedModel plays a careful support agent by rules. Set
``CADENZA_MODEL`` (``openai:gpt-4o-mini`` with ``OPENAI_API_KEY``, ``ollama:llama3.2``, any
OpenAI-compatible endpoint with ``OPENAI_BASE_URL``) to use a real model.

Run it:
    cadenza run examples/support_agent.py \
        --input '{"question": "Order 1042 arrived broken, I want my money back"}'
"""

from __future__ import annotations

import json
import operator
import os
import re
import threading
from typing import Annotated, Any, TypedDict

from cadenza import (
    ChatModel,
    ExecutionContext,
    Message,
    ScriptedModel,
    Workflow,
    WorkflowConfiguration,
    tool,
)


class SupportState(TypedDict, total=False):
    question: str
    messages: Annotated[list[dict[str, Any]], operator.add]
    answer: str


ORDERS: dict[int, dict[str, Any]] = {
    1042: {"item": "ceramic teapot", "total": 39.0, "status": "delivered"},
    1043: {"item": "tea sampler", "total": 24.5, "status": "shipped", "eta": "in 2 days"},
    1044: {"item": "kettle", "total": 89.0, "status": "delivered"},
    1050: {"item": "mugs (set of 4)", "total": 32.0, "status": "refunded"},
}


class Ledger:
    """The payments service, as far as refunds go: one refund per idempotency key."""

    def __init__(self) -> None:
        self.refunds: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def refund(self, key: str, order_id: int, amount: float) -> dict[str, Any]:
        with self._lock:
            if key not in self.refunds:
                number = len(self.refunds) + 1
                self.refunds[key] = {"refund_id": f"rf_{number:04d}", "order_id": order_id}
                self.refunds[key]["amount"] = amount
            return dict(self.refunds[key])


LEDGER = Ledger()


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order: its item, total and delivery status.

    Args:
        order_id: The order number (four digits).
    """
    if order_id not in ORDERS:
        raise LookupError(f"there is no order {order_id}")
    return {"order_id": order_id, **ORDERS[order_id]}


@tool
def refund(order_id: int, amount: float, reason: str, ctx: ExecutionContext) -> dict[str, Any]:
    """Refund a delivered order, at most its total.

    Args:
        order_id: The order to refund.
        amount: Dollars to give back.
        reason: Why, in a few words.
    """
    order = ORDERS.get(order_id)
    if order is None:
        raise LookupError(f"there is no order {order_id}")
    if order["status"] != "delivered":
        raise ValueError(f"order {order_id} is {order['status']}; only delivered orders refund")
    if not 0 < amount <= order["total"]:
        raise ValueError(f"amount must be between 0 and the order total {order['total']}")
    return LEDGER.refund(ctx.idempotency_key, order_id, amount)


SYSTEM = (
    "You are a support agent for a tea shop. Look orders up before answering about them. "
    "Refund only delivered orders the customer reports damaged or wants returned, for at most "
    "their total. Answer briefly and mention refund ids."
)

_WANTS_REFUND = ("refund", "money back", "broken", "damaged", "return")


def scripted_agent(messages: list[Message]) -> Any:
    """The offline model: the same careful policy, as rules over the conversation."""
    asked = max(i for i, m in enumerate(messages) if m.role == "user")
    request = messages[asked].content
    results = [m for m in messages[asked:] if m.role == "tool"]
    found = [json.loads(m.content) for m in results if m.name == "lookup_order" and _ok(m)]
    paid = [json.loads(m.content) for m in results if m.name == "refund" and _ok(m)]
    problems = [m.content.split(": ", 2)[-1] for m in results if not _ok(m)]
    if messages[-1].role == "user":
        orders = re.findall(r"\b(\d{4})\b", request)
        if not orders:
            return "Could you tell me your order number?"
        calls = [{"name": "lookup_order", "arguments": {"order_id": int(o)}} for o in orders]
        return {"tool_calls": calls}
    wants_refund = any(word in request.lower() for word in _WANTS_REFUND)
    if messages[-1].name == "lookup_order" and wants_refund:
        refunds = [
            {"name": "refund", "arguments": {"order_id": o["order_id"], "amount": o["total"]}}
            for o in found
            if o["status"] == "delivered"
        ]
        for call in refunds:
            call["arguments"]["reason"] = "reported damaged"
        if refunds:
            return {"tool_calls": refunds}
    refunded = {r["order_id"] for r in paid}
    lines = [
        f"I have refunded ${r['amount']:.2f} for order {r['order_id']} (refund {r['refund_id']})."
        for r in paid
    ]
    lines += [
        f"Order {o['order_id']} ({o['item']}) is "
        + ("already refunded" if o["status"] == "refunded" else o["status"])
        + (f", arriving {o['eta']}." if o.get("eta") else ".")
        for o in found
        if o["order_id"] not in refunded
    ]
    lines += [p[0].upper() + p[1:] + "." for p in problems]
    return " ".join(lines)


def _ok(message: Message) -> bool:
    return not message.content.startswith("Error:")


def make_model() -> ChatModel:
    if os.environ.get("CADENZA_MODEL"):
        from cadenza.agents.config import load_model

        return load_model()
    return ScriptedModel(rules=[scripted_agent], name="scripted:support")


workflow = Workflow(
    "support_agent",
    state=SupportState,
    config=WorkflowConfiguration(timeout=300),
    description="A support agent that looks orders up and refunds them, idempotently.",
)
workflow.react(
    "agent",
    model=make_model(),
    tools=[lookup_order, refund],
    system=SYSTEM,
    input_key="question",
    max_steps=6,
    token_budget=50_000,
    retries=2,
    retry_delay=1.0,
)


if __name__ == "__main__":
    import asyncio

    from cadenza import Engine

    async def main() -> None:
        async with Engine("memory") as engine:
            for question in (
                "Order 1042 arrived broken, I want my money back",
                "Where are my orders 1043 and 1044?",
            ):
                result = await engine.run(workflow, {"question": question})
                print(f"{result.status}  {result.state.get('answer') or result.error}")

    asyncio.run(main())
