"""Run ids: a ``NewType`` keeps them apart from other strings in signatures at no cost."""

from __future__ import annotations

import uuid
from typing import NewType

RunId = NewType("RunId", str)


def new_run_id() -> RunId:
    return RunId(uuid.uuid4().hex)
