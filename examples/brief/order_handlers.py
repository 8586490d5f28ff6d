"""Handlers for the design brief's e-commerce order workflow (``order.json``), deterministic
so the example runs offline."""

from __future__ import annotations

from typing import Any

from cadenza import ExecutionContext, NonRetryableError, handler

State = dict[str, Any]


@handler
def validate_order(state: State) -> State:
    items = state.get("items") or []
    if not items:
        raise NonRetryableError("an order needs at least one item")
    bad = [i.get("sku", "?") for i in items if i.get("quantity", 0) < 1 or i.get("price", 0) < 0]
    if bad:
        raise NonRetryableError(f"invalid quantity or price for {', '.join(bad)}")
    total = round(sum(i["quantity"] * i["price"] for i in items), 2)
    return {"total": total, "order_valid": True}


@handler("process_payment_and_inventory", branch=True)
def process_payment(state: State, ctx: ExecutionContext) -> State:
    # The idempotency key makes a retried charge safe at the payment provider.
    return {
        "payment": {
            "status": "captured",
            "amount": state["total"],
            "reference": f"pay-{state['order_id']}",
            "idempotency_key": ctx.idempotency_key,
        }
    }


@handler("process_payment_and_inventory", branch=True)
def reserve_inventory(state: State) -> State:
    return {"inventory": {"reserved": [i["sku"] for i in state["items"]], "warehouse": "LYS-1"}}


@handler
def handle_special_shipping(state: State) -> State:
    return {"shipping_method": "express", "shipping_priority": 1}


@handler
def generate_shipping_label(state: State) -> State:
    method = state.get("shipping_method", "standard")
    return {"label": f"LBL-{state['order_id']}-{method.upper()}"}


@handler
def send_confirmation_email(state: State) -> State:
    method = state.get("shipping_method", "standard")
    return {
        "confirmation": (
            f"Order {state['order_id']} confirmed: {len(state['items'])} item(s), "
            f"{state['total']:.2f} charged, shipping {method} with label {state['label']}."
        )
    }
