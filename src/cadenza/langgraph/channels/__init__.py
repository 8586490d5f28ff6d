"""Channel kinds: how a state key or routing signal takes the writes of a step."""

from cadenza.langgraph.channels.any_value import AnyValue, UntrackedValue
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.channels.binop import BinaryOperatorAggregate
from cadenza.langgraph.channels.ephemeral_value import EphemeralValue
from cadenza.langgraph.channels.last_value import LastValue, LastValueAfterFinish
from cadenza.langgraph.channels.named_barrier_value import (
    NamedBarrierValue,
    NamedBarrierValueAfterFinish,
)
from cadenza.langgraph.channels.topic import Topic

__all__ = (
    "BaseChannel",
    "AnyValue",
    "LastValue",
    "LastValueAfterFinish",
    "UntrackedValue",
    "EphemeralValue",
    "BinaryOperatorAggregate",
    "NamedBarrierValue",
    "NamedBarrierValueAfterFinish",
    "Topic",
)
