"""Workflows the API tests serve: plain, gated by an approval, restricted by
``allowed_users``, waiting for a signal, failing on demand, and waiting for a callback."""

from __future__ import annotations

from typing import TypedDict

from cadenza import Workflow


class Order(TypedDict, total=False):
    amount: float
    items: list[int]
    note: str
    done: bool
    reply: dict
    callback: dict


orders = Workflow("orders", state=Order)


@orders.step
def check(state: Order) -> Order:
    return {"note": f"checked {state.get('amount', 0)}"}


@orders.step
def finish(state: Order) -> Order:
    return {"done": True}


orders.chain(check, finish)

gated = Workflow("gated", state=Order)
gated.approval("review", approvers=["compliance_officer"], show=["amount"], summary="Big one")


@gated.step
def after_review(state: Order) -> Order:
    return {"done": True}


gated.chain("review", after_review)

secret = Workflow("secret", state=Order).configure(allowed_users=["finance"])


@secret.step
def hidden(state: Order) -> Order:
    return {"done": True}


waiter = Workflow("waiter", state=Order)
waiter.wait("hold", signal="go", output="note")


@waiter.step
def after_signal(state: Order) -> Order:
    return {"done": True}


waiter.chain("hold", after_signal)

#: What ``flaky`` does: fail while this holds (the tests flip it).
FAILING = {"on": True}
flaky = Workflow("flaky", state=Order)


@flaky.step
def first(state: Order) -> Order:
    return {"note": "first"}


@flaky.step
def sometimes(state: Order) -> Order:
    if FAILING["on"]:
        raise RuntimeError("failing on purpose")
    return {"done": True}


flaky.chain(first, sometimes)

#: The callback test's receiver, set by the test (http://127.0.0.1:PORT).
RECEIVER = "http://127.0.0.1:9/hook"
called = Workflow("called", state=Order).configure(webhook_allow=["http://127.0.0.1"])
called.webhook(
    "notify",
    endpoint=RECEIVER,
    payload=["amount"],
    output="reply",
    secret_env="CADENZA_TEST_WEBHOOK_SECRET",
    callback="callback",
)


@called.step
def after_callback(state: Order) -> Order:
    return {"done": True}


called.chain("notify", after_callback)
