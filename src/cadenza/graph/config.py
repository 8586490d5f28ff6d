"""Workflow-level configuration: the design brief's ``WorkflowConfiguration`` fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkflowConfiguration(BaseModel):
    """Settings that apply to every run of a workflow.

    ``timeout`` bounds a whole run (seconds, measured from its creation, so a resumed run keeps
    its original deadline); ``max_parallel_steps`` bounds how many step handlers of one run
    execute at once; ``max_retries`` is the number of retries of a failed step that sets no
    policy of its own (unset: the engine's default policy, which retries nothing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout: float | None = Field(default=3600, gt=0)
    max_parallel_steps: int = Field(default=10, ge=1)
    max_retries: int | None = Field(default=None, ge=0)
    enable_metrics: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    require_approval: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    webhook_endpoints: dict[str, str] = Field(default_factory=dict)
    notification_channels: tuple[str, ...] = ()
