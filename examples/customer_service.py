"""The design brief's customer-service workflow, with deterministic handlers.

classify_inquiry → route_to_specialist (CONDITIONAL) → billing | technical | shipping | general
→ generate_response (PARALLEL drafts, joined in order) → compose_reply → quality_check
→ human_quality_review (HUMAN_APPROVAL by a support lead, only for replies that failed a check)

The category comes from a semantic router (the route whose descriptions are closest in meaning
to the inquiry, by a small local embedding model) when ``cadenza[embeddings]`` is installed, and
from keyword rules otherwise.

Run it:
    cadenza run examples/customer_service.py \
        --input '{"inquiry": "I was charged twice for order 1234"}'
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, TypedDict

from cadenza import ExecutionContext, Workflow, WorkflowConfiguration
from cadenza.agents.routing import semantic_or_keywords


class Draft(TypedDict):
    part: str
    text: str


class SupportState(TypedDict, total=False):
    inquiry: str
    customer_tier: str
    category: str
    order_id: str | None
    urgency: str
    specialist: str
    findings: Annotated[list[str], operator.add]
    drafts: Annotated[list[Draft], operator.add]
    reply: str
    quality: dict[str, Any]
    approved: bool
    needs_review: bool


workflow = Workflow(
    "customer_service",
    state=SupportState,
    config=WorkflowConfiguration(timeout=60, max_parallel_steps=4, max_retries=1),
    description="Classify an inquiry, route it to a specialist, draft and check a reply.",
)

# What each category is about, in the customers' words; the router compares an inquiry with
# every line and takes the category of the closest one.
ROUTES = {
    "billing": [
        "questions about charges, payments, invoices, receipts and refunds",
        "I was billed the wrong amount",
        "my card was charged more than once for the same purchase",
        "I want my money back",
        "update the credit card or payment method on my account",
        "change or cancel my subscription plan and what it costs",
        "there is a fee on my bank statement I do not recognise",
    ],
    "technical": [
        "the app or website is broken, crashes, freezes or shows an error message",
        "I cannot sign in or my password does not work",
        "a feature stopped working after the latest update",
        "the page will not load or is extremely slow",
        "problems installing or syncing the software on my phone or computer",
        "I found a bug",
    ],
    "shipping": [
        "where is my package and when will it be delivered",
        "the tracking number has not updated for days",
        "my order arrived damaged or items are missing from the box",
        "change the delivery address or shipping speed of an order",
        "questions about shipping costs, carriers and delivery times",
        "I need a return label to send an item back",
    ],
    "general": [
        "general questions about the company, its products, stock, gift cards or opening hours",
        "I want to talk to a person or have someone call me back",
        "change my email address, name or notification settings",
        "delete my account or my personal data",
        "feedback, a compliment or a complaint about the service",
        "do you have a loyalty programme or student discount",
    ],
}
# The fallback without the model: the first category with one of its words in the inquiry.
KEYWORDS = {
    "billing": ("charge", "charged", "charges", "refund", "invoice", "bill", "billed", "payment"),
    "technical": ("error", "crash", "crashes", "login", "log in", "password", "bug", "app"),
    "shipping": (
        "shipping",
        "delivery",
        "delivered",
        "package",
        "parcel",
        "arrive",
        "arrived",
        "tracking",
        "where is my order",
    ),
}
classifier = semantic_or_keywords(
    ROUTES, KEYWORDS, text="inquiry", threshold=0.2, default="general"
)
_URGENT = ("urgent", "asap", "immediately", "twice", "again")


@workflow.step
def classify_inquiry(state: SupportState) -> SupportState:
    text = state["inquiry"].lower()
    category = classifier(state)
    order = re.search(r"\border\s*#?\s*(\d{3,})\b|\b#(\d{3,})\b", text)
    return {
        "category": category,
        "order_id": next(g for g in order.groups() if g) if order else None,
        "urgency": "high" if any(w in text for w in _URGENT) else "normal",
    }


@workflow.step
def billing_specialist(state: SupportState) -> SupportState:
    order = state.get("order_id")
    found = [f"Billing review of order {order}" if order else "Billing review of the account"]
    if "twice" in state["inquiry"].lower() or "double" in state["inquiry"].lower():
        found.append(
            "duplicate charge confirmed; the second charge is refunded in 3-5 business days"
        )
    else:
        found.append("charges match the invoice; a detailed statement is attached")
    return {"specialist": "billing", "findings": found}


@workflow.step
def technical_specialist(state: SupportState) -> SupportState:
    text = state["inquiry"].lower()
    fix = (
        "a password reset link has been sent"
        if "login" in text or "password" in text
        else "updating to the latest app version fixes this error"
    )
    return {"specialist": "technical", "findings": [fix]}


@workflow.step
def shipping_specialist(state: SupportState) -> SupportState:
    order = f"order {state['order_id']}" if state.get("order_id") else "your order"
    return {
        "specialist": "shipping",
        "findings": [f"{order} left the warehouse and is expected within 2 business days"],
    }


@workflow.step
def general_specialist(state: SupportState) -> SupportState:
    return {"specialist": "general", "findings": ["a support agent will follow up within one day"]}


workflow.conditional(
    "route_to_specialist",
    {
        billing_specialist: "category == 'billing'",
        technical_specialist: "category == 'technical'",
        shipping_specialist: "category == 'shipping'",
    },
    default=general_specialist,
)


async def draft_greeting(state: SupportState, ctx: ExecutionContext) -> SupportState:
    tier = state.get("customer_tier", "standard")
    sorry = (
        "We are sorry for the trouble"
        if state.get("urgency") == "high"
        else "Thank you for reaching out"
    )
    prefix = "As a valued premium customer: " if tier == "premium" else ""
    return {"drafts": [{"part": "greeting", "text": f"{prefix}{sorry}."}]}


async def draft_resolution(state: SupportState) -> SupportState:
    findings = state.get("findings", [])
    text = " ".join(f[0].upper() + f[1:] + "." for f in findings[1:] or findings)
    return {"drafts": [{"part": "resolution", "text": text}]}


async def draft_next_steps(state: SupportState) -> SupportState:
    order = state.get("order_id")
    ref = f" about order {order}" if order else ""
    return {
        "drafts": [
            {
                "part": "next_steps",
                "text": f"Reply to this message if you have more questions{ref}.",
            }
        ]
    }


workflow.parallel(
    "generate_response", [draft_greeting, draft_resolution, draft_next_steps], max_concurrent=3
)


@workflow.step
def compose_reply(state: SupportState) -> SupportState:
    return {"reply": " ".join(d["text"] for d in state["drafts"])}


@workflow.step
def quality_check(state: SupportState) -> SupportState:
    reply = state["reply"]
    checks = {
        "not_empty": bool(reply.strip()),
        "mentions_order": state.get("order_id") is None or state["order_id"] in reply,
        "short_enough": len(reply) <= 600,
        "no_promises_of_compensation": "compensation" not in reply.lower(),
        # An urgent inquiry no specialist could answer should not get a generic reply.
        "urgent_answered": state.get("urgency") != "high" or state.get("specialist") != "general",
    }
    passed = all(checks.values())
    return {
        "quality": {"passed": passed, "checks": checks},
        "approved": passed,
        "needs_review": not passed,
    }


# Replies that failed a rule wait for a support lead (cadenza approve RUN human_quality_review
# --as USER); the others go out at once.
workflow.approval(
    "human_quality_review",
    approvers=["support_lead"],
    required_for=["needs_review"],
    summary="a drafted reply failed a quality rule",
    show=["inquiry", "reply", "quality"],
)


workflow.chain(classify_inquiry, "route_to_specialist")
workflow.edge(
    [billing_specialist, technical_specialist, shipping_specialist, general_specialist],
    "generate_response",
)
workflow.chain("generate_response", compose_reply, quality_check, "human_quality_review")


SAMPLES = [
    "I was charged twice for order 1234",
    "The app shows an error when I try to login",
    "Where is my order #5521? The package has not arrived",
    "Do you have gift cards?",
]

if __name__ == "__main__":
    import asyncio

    from cadenza import Engine

    async def main() -> None:
        async with Engine("memory") as engine:
            for inquiry in SAMPLES:
                result = await engine.run(workflow, {"inquiry": inquiry})
                print(f"{result.status}  [{result.state['category']}] {result.state['reply']}")

    asyncio.run(main())
