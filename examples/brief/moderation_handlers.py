"""Handlers for the design brief's content-moderation workflow (``moderation.json``)."""

from __future__ import annotations

from typing import Any

from cadenza import handler

State = dict[str, Any]

_BLOCKED = ("scam", "hate", "violence")
_SENSITIVE = ("election", "medical", "minor")


@handler("automated_screening", branch=True)
def toxicity_check(state: State) -> State:
    text = state["content"].lower()
    hits = [w for w in _BLOCKED if w in text]
    return {"toxicity": {"score": min(1.0, 0.45 * len(hits)), "terms": hits}}


@handler("automated_screening", branch=True)
def spam_check(state: State) -> State:
    text = state["content"]
    links = text.count("http")
    return {"spam": {"score": min(1.0, 0.3 * links + (0.3 if text.isupper() else 0.0))}}


@handler("automated_screening", branch=True)
def sensitivity_check(state: State) -> State:
    text = state["content"].lower()
    topics = [w for w in _SENSITIVE if w in text]
    # Confidence in the automated verdict drops when the content touches sensitive topics.
    return {"sensitive_content": bool(topics), "confidence": 0.6 if topics else 0.95}


@handler
def escalate_to_human(state: State) -> State:
    return {"escalated": True}


@handler
def apply_decision(state: State) -> State:
    risky = max(state["toxicity"]["score"], state["spam"]["score"]) >= 0.5
    return {"decision": "removed" if risky else "published"}
