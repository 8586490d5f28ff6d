"""Cadenza: durable, observable orchestration for multi-agent AI workflows.

Everything a user needs is importable from here."""

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
from cadenza.errors import (
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
    VersionMismatch,
    WorkflowTimeout,
)
from cadenza.graph.builder import START, Workflow
from cadenza.graph.config import WorkflowConfiguration
from cadenza.graph.expressions import Expression, compile_expression
from cadenza.graph.ir import FailurePolicy, RouteMode, StepKind, WorkflowIR
from cadenza.graph.registry import HandlerRegistry, handler, handlers
from cadenza.graph.spec_compile import load_workflow_file as load_workflow
from cadenza.graph.spec_load import SpecError
from cadenza.identity import ApprovalDenied, Directory
from cadenza.ids import RunId
from cadenza.observe.base import Observer
from cadenza.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker, CircuitOpen
from cadenza.resilience.limits import Bulkhead
from cadenza.resilience.retry import NonRetryableError, RetryPolicy
from cadenza.runtime.context import ExecutionContext
from cadenza.runtime.engine import Engine, RunResult
from cadenza.runtime.events import Event, EventType
from cadenza.runtime.status import WorkflowStatus
from cadenza.runtime.worker import Worker
from cadenza.store.base import LeaseLost, RunRecord, Store
from cadenza.store.memory import MemoryStore


def __getattr__(name: str) -> object:
    # SQLiteStore is imported lazily so that `import cadenza` stays cheap.
    if name == "SQLiteStore":
        from cadenza.store.sqlite import SQLiteStore

        return SQLiteStore
    if name == "PostgresStore":  # needs the postgres extra
        from cadenza.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'cadenza' has no attribute {name!r}")


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
    "VersionMismatch",
    "WorkflowTimeout",
]
