"""Managed values: state keys computed by the executor for each task, never written."""

from __future__ import annotations

from typing import Annotated, Any

__all__ = ("IsLastStep", "ManagedValue", "RemainingSteps", "is_managed_value")


class ManagedValue:
    """A key whose value a task reads from its step; subclasses define ``get``."""

    @staticmethod
    def get(step: int, stop: int) -> Any:
        raise NotImplementedError


class IsLastStepManager(ManagedValue):
    @staticmethod
    def get(step: int, stop: int) -> bool:
        return step == stop - 1


class RemainingStepsManager(ManagedValue):
    @staticmethod
    def get(step: int, stop: int) -> int:
        return stop - step


IsLastStep = Annotated[bool, IsLastStepManager]
RemainingSteps = Annotated[int, RemainingStepsManager]


def is_managed_value(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, ManagedValue)
