"""Reserved channel and configuration names shared by the facade's modules.

They are the names LangGraph stores in checkpoints, so that a checkpoint written by either
engine reads the same in the other."""

from __future__ import annotations

import sys
from typing import Any, Final

START: Final = sys.intern("__start__")
END: Final = sys.intern("__end__")

INPUT: Final = sys.intern("__input__")
INTERRUPT: Final = sys.intern("__interrupt__")
RESUME: Final = sys.intern("__resume__")
ERROR: Final = sys.intern("__error__")
ERROR_SOURCE_NODE: Final = sys.intern("__error_source_node__")
NO_WRITES: Final = sys.intern("__no_writes__")
TASKS: Final = sys.intern("__pregel_tasks")
RETURN: Final = sys.intern("__return__")
PUSH: Final = sys.intern("__pregel_push")
PULL: Final = sys.intern("__pregel_pull")
ROOT: Final = "__root__"

CONF: Final = "configurable"
THREAD_ID: Final = "thread_id"
CHECKPOINT_ID: Final = "checkpoint_id"
CHECKPOINT_NS: Final = "checkpoint_ns"
CHECKPOINT_MAP: Final = "checkpoint_map"
CONFIG_KEY_CHECKPOINTER: Final = "__pregel_checkpointer"
CONFIG_KEY_TASK_ID: Final = "__pregel_task_id"

NS_SEP: Final = "|"
NS_END: Final = ":"
NULL_TASK_ID: Final = "00000000-0000-0000-0000-000000000000"

TAG_HIDDEN: Final = "langsmith:hidden"
TAG_NOSTREAM: Final = "nostream"

# Writes that describe what happened to a task rather than what it produced; savers keep
# one slot per kind per task (LangGraph's WRITES_IDX_MAP).
SPECIAL_WRITES: Final = {ERROR: -1, "__scheduled__": -2, INTERRUPT: -3, RESUME: -4}
CONTROL_WRITES: Final = frozenset((ERROR, ERROR_SOURCE_NODE, INTERRUPT, RESUME))
# Channels a task may write that are never applied to state.
NOT_STATE: Final = frozenset((NO_WRITES, PUSH, RESUME, INTERRUPT, RETURN, ERROR, ERROR_SOURCE_NODE))
RESERVED: Final = frozenset((TASKS, INTERRUPT, RESUME, ERROR, NO_WRITES, PUSH, PULL, RETURN))


class _Missing:
    """The absence of a value, distinct from ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
