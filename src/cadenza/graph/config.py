"""Workflow-level configuration: the design brief's ``WorkflowConfiguration`` fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

#: How the WEBHOOK step signs: Standard Webhooks headers, Cadenza's earlier ones, or both.
WebhookSigning = Literal["standard", "legacy", "both"]


class WorkflowConfiguration(BaseModel):
    """Settings that apply to every run of a workflow.

    ``timeout`` bounds a whole run (seconds, measured from its creation, so a resumed run keeps
    its original deadline); ``max_parallel_steps`` bounds how many step handlers of one run
    execute at once; ``max_retries`` is the number of retries of a failed step that sets no
    policy of its own (unset: the engine's default policy, which retries nothing).

    ``log_level`` is the level below which the workflow's own lines (``ctx.logger``) are
    dropped; the process's logging configuration still filters what passes.
    ``enable_metrics`` is accepted and recorded but does nothing yet: no metrics are exported
    until the metrics observer arrives (a later observability change), whatever its value."""

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
    webhook_allow: tuple[str, ...] = ()
    webhook_signing: WebhookSigning = "standard"

    @field_validator("webhook_allow")
    @classmethod
    def _origins(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry in canonical form (``http://127.0.0.1:8080``), so a malformed one fails
        when the workflow is defined rather than at its first call."""
        if not entries:
            return entries
        # Imported here: defining a workflow should not load the HTTP stack.
        from cadenza.net.egress import origin_of

        return tuple(dict.fromkeys(str(origin_of(entry)) for entry in entries))

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out fields added since 0.1 while they hold their defaults: the dump is hashed
        into the workflow's version, and runs stay pinned to the version they started on,
        so a new field must not change the version of a workflow that does not use it."""
        data: dict[str, Any] = handler(self)
        for name in _ADDED_LATER:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data


_ADDED_LATER = ("webhook_allow", "webhook_signing")
