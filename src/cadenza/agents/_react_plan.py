"""The plan of an ORCHESTRATOR, as plain data: the subtasks a planner may propose, the checks
a plan must pass before any worker starts, and the prompts that tell models about both."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

PLANNER_PROMPT = (
    "You plan work for a team of workers. Split the task into subtasks, each done by the one "
    "worker with the capability it needs. Give every subtask an id, clear instructions, and "
    "depends_on: the ids of earlier subtasks whose results it needs (empty if none). Keep the "
    "plan short."
)
SYNTHESIZER_PROMPT = (
    "You combine the results of subtasks into one answer to the task. Use only what the "
    "results say, and say which subtasks failed, if any."
)


class PlanError(ValueError):
    """A plan that cannot be carried out (unknown capability, unknown dependency, too long)."""


class Subtask(BaseModel):
    id: str = ""
    capability: str
    instructions: str
    depends_on: list[str] = Field(default_factory=list)


def plan_model(capabilities: Sequence[str]) -> type[BaseModel]:
    """The structured output asked of a planning model: subtasks whose capability is one of
    the workers' (an enum in the JSON schema, so the model cannot invent one)."""
    choice: Any = Literal[tuple(capabilities)]  # type: ignore[valid-type]
    item = create_model(
        "Subtask",
        id=(str, Field(description="short unique id, e.g. '1'")),
        capability=(choice, Field(description="the capability of the worker that does it")),
        instructions=(str, Field(description="what the worker must do, self-contained")),
        depends_on=(list[str], Field(default_factory=list, description="ids it needs first")),
    )
    return create_model("Plan", subtasks=(list[item], ...))  # type: ignore[valid-type]


def check_plan(raw: Any, capabilities: Sequence[str], max_subtasks: int) -> list[dict[str, Any]]:
    """The subtasks of a plan (a list, or an object with ``subtasks``), as plain dicts with
    ids; raises :class:`PlanError` saying what is wrong."""
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    if isinstance(raw, Mapping) and "subtasks" in raw:
        raw = raw["subtasks"]
    if not isinstance(raw, list | tuple):
        raise PlanError(f"a plan is a list of subtasks, got {type(raw).__name__}")
    if len(raw) > max_subtasks:
        raise PlanError(f"the plan has {len(raw)} subtasks, more than max_subtasks={max_subtasks}")
    subtasks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"subtask {i + 1}"
        try:
            task = Subtask.model_validate(
                item.model_dump(mode="json") if isinstance(item, BaseModel) else item
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "subtask"
            raise PlanError(f"{where}: {field}: {error['msg']}") from None
        sid = task.id.strip() or str(i + 1)
        if sid in seen:
            raise PlanError(f"{where}: id {sid!r} is used twice")
        if task.capability not in capabilities:
            raise PlanError(
                f"{where} asks for capability {task.capability!r}, which no worker declares "
                f"(capabilities: {', '.join(capabilities)})"
            )
        for dep in task.depends_on:
            if dep not in seen:
                raise PlanError(f"{where} depends on {dep!r}, which is not an earlier subtask's id")
        seen.add(sid)
        subtasks.append(
            {
                "id": sid,
                "capability": task.capability,
                "instructions": task.instructions,
                "depends_on": list(dict.fromkeys(task.depends_on)),
            }
        )
    return subtasks


def planner_messages(
    prompt: str, workers: Sequence[tuple[str, str]], task: str
) -> list[dict[str, str]]:
    """System and user message (as role/content pairs) for a planning model."""
    listed = "\n".join(f"- {cap}: {about or 'no description'}" for cap, about in workers)
    system = f"{prompt or PLANNER_PROMPT}\n\nWorkers, by capability:\n{listed}"
    return [{"role": "system", "content": system}, {"role": "user", "content": task}]


def worker_request(subtask: Mapping[str, Any]) -> str:
    """The user message of an agent worker: its instructions, the overall task, and the
    results of the subtasks it depends on."""
    parts = [str(subtask["instructions"])]
    if subtask.get("task"):
        parts.append(f"Overall task: {subtask['task']}")
    inputs = subtask.get("inputs") or {}
    if inputs:
        lines = [f"[{sid}] {_text(value)}" for sid, value in inputs.items()]
        parts.append("Results of earlier subtasks:\n" + "\n".join(lines))
    return "\n\n".join(parts)


def synthesizer_request(task: str, results: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for r in results:
        head = f"[{r['id']}] ({r['capability']}) {r['instructions']}"
        body = _text(r.get("result")) if r["status"] == "ok" else f"FAILED: {r.get('error')}"
        lines.append(f"{head}\n{body}")
    return f"Task: {task}\n\nResults:\n\n" + "\n\n".join(lines)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
