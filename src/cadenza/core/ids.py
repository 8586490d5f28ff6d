"""Identifier types. ``NewType`` keeps run ids and step paths apart in signatures at no cost."""

from __future__ import annotations

import uuid
from typing import NewType

RunId = NewType("RunId", str)
StepPath = NewType("StepPath", str)
WorkflowHash = NewType("WorkflowHash", str)


def new_run_id() -> RunId:
    return RunId(uuid.uuid4().hex)
