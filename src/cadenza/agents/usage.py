"""What a run's model calls consumed, read from its log: every model call is a recorded
sub-step with its model, token usage and (when the model has a price) cost."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cadenza.core.events import Event, EventType


@dataclass(slots=True)
class RunUsage:
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # US dollars; None when no model had a price
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "model_calls": self.model_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "by_model": self.by_model,
        }

    def summary(self) -> str:
        cost = f", ${self.cost:.4f}" if self.cost is not None else ""
        calls = "call" if self.model_calls == 1 else "calls"
        return (
            f"{self.model_calls} model {calls}, {self.input_tokens} input + "
            f"{self.output_tokens} output tokens{cost}"
        )


def run_usage(events: Iterable[Event]) -> RunUsage:
    """Sum the usage of every recorded model call of a run."""
    total = RunUsage()
    for event in events:
        data = event.data
        if event.type is not EventType.STEP_COMPLETED or "model" not in data:
            continue
        usage = data.get("usage") or {}
        tokens_in = int(usage.get("input_tokens", 0))
        tokens_out = int(usage.get("output_tokens", 0))
        total.model_calls += 1
        total.input_tokens += tokens_in
        total.output_tokens += tokens_out
        row = total.by_model.setdefault(
            str(data["model"]), {"model_calls": 0, "input_tokens": 0, "output_tokens": 0}
        )
        row["model_calls"] += 1
        row["input_tokens"] += tokens_in
        row["output_tokens"] += tokens_out
        if data.get("cost") is not None:
            total.cost = (total.cost or 0.0) + float(data["cost"])
            row["cost"] = row.get("cost", 0.0) + float(data["cost"])
    return total
