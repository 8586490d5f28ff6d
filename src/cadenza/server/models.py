"""The shapes of the API's requests and answers (what ``/openapi.json`` describes). Strings a
client sends are bounded here; what the server returns is returned as stored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cadenza.core.status import WorkflowStatus

__all__ = [
    "Approval",
    "ApprovalPage",
    "AuditVerification",
    "Broken",
    "CallbackReceipt",
    "CancelRequest",
    "Decision",
    "EventOut",
    "EventPage",
    "FieldProblem",
    "ForkRequest",
    "Health",
    "PauseRequest",
    "ProblemDetails",
    "Readiness",
    "RunOut",
    "RunPage",
    "SignalRequest",
    "StartRun",
    "StateOut",
    "WorkflowDefinition",
    "WorkflowGraph",
    "WorkflowOut",
    "WorkflowVersion",
]

Name = Field(min_length=1, max_length=200)
Reason = Field(default="", max_length=2000)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldProblem(BaseModel):
    path: str = Field(description="JSON path of what was wrong, e.g. $.body.input.amount")
    message: str


class ProblemDetails(BaseModel):
    """An RFC 9457 problem (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


# -- workflows -----------------------------------------------------------------------------------


class WorkflowOut(BaseModel):
    name: str
    version: str = Field(description="The version new runs start on (a definition hash)")
    versions: list[str] = Field(description="Every version this server has loaded")
    steps: list[str]
    state: dict[str, str] = Field(description="State fields: type|reducer")
    allowed_users: list[str]
    source_format: Literal["yaml", "json"] | None = None


class WorkflowDefinition(BaseModel):
    name: str
    version: str
    ir: dict[str, Any] = Field(description="The description the version hashes")
    source: str | None = Field(
        default=None, description="The YAML/JSON file as written, when it came from one"
    )
    source_format: Literal["yaml", "json"] | None = None


class WorkflowGraph(BaseModel):
    name: str
    version: str
    format: Literal["mermaid", "dot"]
    graph: str


class WorkflowVersion(BaseModel):
    version: str
    loaded: bool = Field(description="Whether this server can start runs on it")
    current: bool
    runs: int
    first_run: float | None = None
    last_run: float | None = None


# -- runs ----------------------------------------------------------------------------------------


class StartRun(_Closed):
    input: dict[str, Any] = Field(default_factory=dict, description="Checked against the state")
    queue: str = Field(default="default", min_length=1, max_length=200)
    version: str | None = Field(
        default=None,
        max_length=64,
        description="A version this server loaded (default: the current one)",
    )


class RunOut(BaseModel):
    run_id: str
    workflow: str
    version: str
    status: WorkflowStatus
    created_at: float
    updated_at: float
    error: str | None = None
    parent_run_id: str | None = None
    queue: str
    input: dict[str, Any]
    state: dict[str, Any] | None = Field(
        default=None, description="The current state (run detail and command answers only)"
    )


class RunPage(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null: done")


class EventOut(BaseModel):
    run_id: str
    seq: int
    type: str
    path: str
    scope: str
    attempt: int
    data: dict[str, Any]
    ts: float
    prev_hash: str
    hash: str


class EventPage(BaseModel):
    events: list[EventOut]
    next_after_seq: int | None = Field(description="Pass as after_seq= for the next page")


class StateOut(BaseModel):
    run_id: str
    seq: int = Field(description="The state after this event")
    status: WorkflowStatus
    state: dict[str, Any]


class CancelRequest(_Closed):
    reason: str = Field(default="cancelled over the API", max_length=2000)


class PauseRequest(_Closed):
    reason: str = Field(default="paused over the API", max_length=2000)


class ForkRequest(_Closed):
    from_step: str = Field(min_length=1, max_length=1000, description="Start after this step")
    set: dict[str, Any] = Field(default_factory=dict, description="State values to change")


class SignalRequest(_Closed):
    name: str = Field(min_length=1, max_length=200)
    payload: Any = None


# -- approvals -----------------------------------------------------------------------------------


class DecisionOut(BaseModel):
    actor: str
    approve: bool
    comment: str = ""


class Approval(BaseModel):
    run_id: str
    workflow: str
    step: str
    approvers: list[str]
    quorum: int
    approved_by: list[str]
    summary: str | None = None
    show: Any = Field(default=None, description="The state slice the step declares")
    since: float
    deadline: float | None = None
    decisions: list[DecisionOut] | None = None
    waiting: bool | None = None


class ApprovalPage(BaseModel):
    approvals: list[Approval]
    next_cursor: str | None


class Decision(_Closed):
    approve: bool
    comment: str = Field(default="", max_length=2000)


# -- audit, health, callbacks --------------------------------------------------------------------


class Broken(BaseModel):
    run_id: str
    seq: int | None = None
    reason: str
    detail: str


class AuditVerification(BaseModel):
    ok: bool
    runs: int
    broken: list[Broken]
    next_cursor: str | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    store: str
    schema_version: int | None = None
    expected_schema_version: int
    detail: str | None = None


class CallbackReceipt(BaseModel):
    webhook_id: str
    duplicate: bool = Field(description="This webhook-id was delivered before: nothing done")
