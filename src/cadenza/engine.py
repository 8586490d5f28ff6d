"""The engine with Cadenza's own step kinds: where the runtime, which knows no step kind (the
steps depend on it, never the other way round), and :mod:`cadenza.steps` meet. Importing this
module makes :data:`cadenza.steps.KINDS` what every :class:`Engine` executes unless it is
given other kinds (``Engine(kinds=...)``); ``from cadenza import Engine`` imports it."""

from __future__ import annotations

from cadenza.runtime.engine import Engine, ResumeReport, RunResult
from cadenza.steps import KINDS

__all__ = ["KINDS", "Engine", "ResumeReport", "RunResult"]
