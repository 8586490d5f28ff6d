"""The JSON Schema of the workflow file format, generated from the models (and published as
``schema/cadenza-workflow.schema.json`` for editors)."""

from __future__ import annotations

from typing import Any

from cadenza.graph.spec import StepSpec, WorkflowSpec


def workflow_schema() -> dict[str, Any]:
    """A document is a workflow mapping, or (the design brief's form) a bare list of steps."""
    mapping = WorkflowSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = mapping.pop("$defs", {})
    defs["WorkflowSpec"] = mapping
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Cadenza workflow",
        "description": "A Cadenza workflow: a mapping with steps, or a bare list of steps.",
        "anyOf": [
            {"$ref": "#/$defs/WorkflowSpec"},
            {"type": "array", "items": {"$ref": "#/$defs/StepSpec"}, "minItems": 1},
        ],
        "$defs": defs,
    }


__all__ = ["StepSpec", "workflow_schema"]
