"""Cadenza: durable, observable orchestration for multi-agent AI workflows.

Everything a user needs is importable from here. The names are loaded on first use (PEP 562),
so that ``import cadenza`` and every ``cadenza`` command stay fast: a command that only lists
runs should not pay for the agents, the expression engine or the HTTP client."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from cadenza.agents.model import (
        ChatModel,
        Message,
        ModelError,
        ModelResponse,
        Pricing,
        ToolCall,
        ToolSpec,
        Usage,
    )
    from cadenza.agents.scripted import ScriptedModel
    from cadenza.agents.tools import Tool, tool
    from cadenza.core.context import ExecutionContext
    from cadenza.core.errors import (
        CadenzaError,
        ConflictError,
        DefinitionError,
        ExpressionError,
        IllegalTransition,
        InputError,
        LoopLimitExceeded,
        RollbackRequested,
        RunNotFound,
        StepFailed,
        StoreError,
        StoreUnavailable,
        VersionMismatch,
    )
    from cadenza.core.events import Event, EventType
    from cadenza.core.ids import RunId
    from cadenza.core.status import WorkflowStatus
    from cadenza.engine import Engine
    from cadenza.graph.builder import START, Workflow
    from cadenza.graph.config import WorkflowConfiguration
    from cadenza.graph.expressions import Expression, compile_expression
    from cadenza.graph.ir import FailurePolicy, RouteMode, StepKind, WorkflowIR
    from cadenza.graph.registry import HandlerRegistry, handler, handlers
    from cadenza.graph.spec_compile import load_workflow_file as load_workflow
    from cadenza.graph.spec_load import SpecError
    from cadenza.identity import ApprovalDenied, Directory
    from cadenza.observe.base import Observer
    from cadenza.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker, CircuitOpen
    from cadenza.resilience.limits import Bulkhead
    from cadenza.resilience.retry import NonRetryableError, RetryPolicy
    from cadenza.runtime.engine import RunResult
    from cadenza.runtime.worker import Worker
    from cadenza.store.base import LeaseLost, RunRecord, Store
    from cadenza.store.memory import MemoryStore
    from cadenza.store.postgres import PostgresStore
    from cadenza.store.sqlite import SQLiteStore

#: Where each public name lives: ``name: module`` or ``name: (module, attribute)``.
_EXPORTS: dict[str, str | tuple[str, str]] = {
    "ChatModel": "cadenza.agents.model",
    "Message": "cadenza.agents.model",
    "ModelError": "cadenza.agents.model",
    "ModelResponse": "cadenza.agents.model",
    "Pricing": "cadenza.agents.model",
    "ToolCall": "cadenza.agents.model",
    "ToolSpec": "cadenza.agents.model",
    "Usage": "cadenza.agents.model",
    "ScriptedModel": "cadenza.agents.scripted",
    "Tool": "cadenza.agents.tools",
    "tool": "cadenza.agents.tools",
    "CadenzaError": "cadenza.core.errors",
    "ConflictError": "cadenza.core.errors",
    "DefinitionError": "cadenza.core.errors",
    "ExpressionError": "cadenza.core.errors",
    "IllegalTransition": "cadenza.core.errors",
    "InputError": "cadenza.core.errors",
    "LoopLimitExceeded": "cadenza.core.errors",
    "RollbackRequested": "cadenza.core.errors",
    "RunNotFound": "cadenza.core.errors",
    "StepFailed": "cadenza.core.errors",
    "StoreError": "cadenza.core.errors",
    "StoreUnavailable": "cadenza.core.errors",
    "VersionMismatch": "cadenza.core.errors",
    "START": "cadenza.graph.builder",
    "Workflow": "cadenza.graph.builder",
    "WorkflowConfiguration": "cadenza.graph.config",
    "Expression": "cadenza.graph.expressions",
    "compile_expression": "cadenza.graph.expressions",
    "FailurePolicy": "cadenza.graph.ir",
    "RouteMode": "cadenza.graph.ir",
    "StepKind": "cadenza.graph.ir",
    "WorkflowIR": "cadenza.graph.ir",
    "HandlerRegistry": "cadenza.graph.registry",
    "handler": "cadenza.graph.registry",
    "handlers": "cadenza.graph.registry",
    "load_workflow": ("cadenza.graph.spec_compile", "load_workflow_file"),
    "SpecError": "cadenza.graph.spec_load",
    "ApprovalDenied": "cadenza.identity",
    "Directory": "cadenza.identity",
    "RunId": "cadenza.core.ids",
    "Observer": "cadenza.observe.base",
    "BreakerConfig": "cadenza.resilience.breaker",
    "BreakerState": "cadenza.resilience.breaker",
    "CircuitBreaker": "cadenza.resilience.breaker",
    "CircuitOpen": "cadenza.resilience.breaker",
    "Bulkhead": "cadenza.resilience.limits",
    "NonRetryableError": "cadenza.resilience.retry",
    "RetryPolicy": "cadenza.resilience.retry",
    "ExecutionContext": "cadenza.core.context",
    "Engine": "cadenza.engine",
    "RunResult": "cadenza.runtime.engine",
    "Event": "cadenza.core.events",
    "EventType": "cadenza.core.events",
    "WorkflowStatus": "cadenza.core.status",
    "Worker": "cadenza.runtime.worker",
    "LeaseLost": "cadenza.store.base",
    "RunRecord": "cadenza.store.base",
    "Store": "cadenza.store.base",
    "MemoryStore": "cadenza.store.memory",
    "SQLiteStore": "cadenza.store.sqlite",
    "PostgresStore": "cadenza.store.postgres",  # needs the postgres extra
}


def __getattr__(name: str) -> object:
    """Import a public name on first use, and keep it here so the next use is a plain lookup."""
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'cadenza' has no attribute {name!r}")
    module, attribute = (where, name) if isinstance(where, str) else where
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    # definitions
    "START",
    "Expression",
    "FailurePolicy",
    "RouteMode",
    "StepKind",
    "Workflow",
    "WorkflowConfiguration",
    "WorkflowIR",
    "compile_expression",
    "handler",
    "handlers",
    "HandlerRegistry",
    "load_workflow",
    "RetryPolicy",
    "Bulkhead",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "NonRetryableError",
    # running
    "Engine",
    "Worker",
    "ExecutionContext",
    "RunId",
    "RunResult",
    "Directory",
    "WorkflowStatus",
    # agents
    "ChatModel",
    "Message",
    "ModelError",
    "ModelResponse",
    "Pricing",
    "ScriptedModel",
    "Tool",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "tool",
    # storage and events
    "Event",
    "EventType",
    "MemoryStore",
    "Observer",
    "RunRecord",
    "SQLiteStore",
    "PostgresStore",
    "Store",
    "LeaseLost",
    # errors
    "ApprovalDenied",
    "CadenzaError",
    "ConflictError",
    "DefinitionError",
    "ExpressionError",
    "IllegalTransition",
    "InputError",
    "LoopLimitExceeded",
    "RollbackRequested",
    "SpecError",
    "RunNotFound",
    "StepFailed",
    "StoreError",
    "StoreUnavailable",
    "VersionMismatch",
]
