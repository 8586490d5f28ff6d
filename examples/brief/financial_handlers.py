"""Handlers for the design brief's financial-transaction workflow (``financial.json``)."""

from __future__ import annotations

from typing import Any

from cadenza import NonRetryableError, handler

State = dict[str, Any]


@handler
def validate_transaction(state: State) -> State:
    amount = state.get("amount")
    if not isinstance(amount, int | float) or amount <= 0:
        raise NonRetryableError(f"amount must be a positive number, got {amount!r}")
    if not str(state.get("account", "")).startswith("ACC-"):
        raise NonRetryableError("account must look like ACC-<number>")
    return {"validated": True, "unusual_pattern": bool(state.get("foreign_country"))}


@handler
def fraud_detection(state: State) -> State:
    score = min(1.0, state["amount"] / 50_000 + (0.4 if state["unusual_pattern"] else 0.0))
    return {"risk_score": round(score, 2), "high_risk_transactions": score >= 0.2}


@handler("process_and_log", branch=True)
def process_transaction(state: State) -> State:
    return {
        "transaction": {"status": "settled", "account": state["account"], "amount": state["amount"]}
    }


@handler("process_and_log", branch=True)
def write_ledger(state: State) -> State:
    return {"ledger_entry": f"{state['account']} -{state['amount']:.2f}"}


@handler
def generate_receipt(state: State) -> State:
    return {"receipt": f"Receipt: {state['amount']:.2f} from {state['account']} settled."}
