"""State schemas to channels: one channel per key, chosen from the key's annotation.

``Annotated[T, reducer]`` makes a reducer key, ``Annotated[T, SomeChannel]`` that channel,
a managed-value marker a managed key, anything else a last-value key. A schema without
annotations (``dict``, ``int``) is one root value."""

from __future__ import annotations

import contextlib
import dataclasses
import types
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from inspect import Parameter, isclass, signature
from typing import Any, ClassVar, NotRequired, Required, get_origin, get_type_hints

from cadenza.langgraph._keys import MISSING, ROOT
from cadenza.langgraph.channels.base import BaseChannel
from cadenza.langgraph.channels.binop import BinaryOperatorAggregate
from cadenza.langgraph.channels.last_value import LastValue
from cadenza.langgraph.managed import ManagedValue, is_managed_value

__all__ = ("channels_for", "mapper_for", "object_fields", "object_updates")


def channels_for(
    schema: Any,
) -> tuple[dict[str, BaseChannel], dict[str, type[ManagedValue]]]:
    """The channels and managed values a schema declares, in declaration order."""
    if not hasattr(schema, "__annotations__"):
        return {ROOT: _channel(ROOT, schema, allow_managed=False)}, {}  # type: ignore[dict-item]
    try:
        hints = get_type_hints(schema, include_extras=True)
    except Exception as exc:
        raise ValueError(f"cannot read the annotations of state schema {schema!r}: {exc}") from exc
    channels: dict[str, BaseChannel] = {}
    managed: dict[str, type[ManagedValue]] = {}
    for name, typ in hints.items():
        if name == "__slots__" or get_origin(typ) is ClassVar:
            continue
        made = _channel(name, typ)
        if isinstance(made, BaseChannel):
            channels[name] = made
        else:
            managed[name] = made
    return channels, managed


def _channel(name: str, annotation: Any, allow_managed: bool = True) -> Any:
    if get_origin(annotation) in (Required, NotRequired):
        annotation = annotation.__args__[0]
    if (marker := _managed(annotation)) is not None:
        if not allow_managed:
            raise ValueError(f"{annotation} is not allowed in this position")
        return marker
    if (channel := _declared_channel(annotation)) is not None:
        channel.key = name
        return channel
    if (channel := _reducer_channel(annotation)) is not None:
        channel.key = name
        return channel
    return LastValue(annotation, name)


def _managed(typ: Any) -> type[ManagedValue] | None:
    meta = getattr(typ, "__metadata__", None)
    if meta:
        marker = get_origin(meta[-1]) or meta[-1]
        if is_managed_value(marker):
            return marker
    if get_origin(typ) is not None and (args := getattr(typ, "__args__", None)) and args[0]:
        return _managed(args[0])
    return None


def _declared_channel(typ: Any) -> BaseChannel | None:
    for item in getattr(typ, "__metadata__", ()):
        if isinstance(item, BaseChannel):
            return item
        if isclass(item) and issubclass(item, BaseChannel):
            return item(getattr(typ, "__origin__", typ))
    return None


def _reducer_channel(typ: Any) -> BinaryOperatorAggregate | None:
    meta = getattr(typ, "__metadata__", None)
    if not meta or not callable(meta[-1]):
        return None
    reducer = meta[-1]
    sig = signature(reducer)
    positional = sum(
        p.kind in (Parameter.POSITIONAL_ONLY, Parameter.POSITIONAL_OR_KEYWORD)
        for p in sig.parameters.values()
    )
    if positional != 2:
        raise ValueError(f"Invalid reducer signature. Expected (a, b) -> c. Got {sig}")
    return BinaryOperatorAggregate(typ, reducer)


def _coerce(schema: type[Any], values: dict[str, Any]) -> Any:
    return schema(**values)


def mapper_for(keys: Sequence[str], schema: Any) -> Callable[[Any], Any] | None:
    """How a node's input dict becomes its declared type: pydantic models and dataclasses
    are built from the dict; TypedDicts and dicts stay dicts."""
    if list(keys) == [ROOT]:
        return None
    if isclass(schema) and (_is_pydantic(schema) or dataclasses.is_dataclass(schema)):
        return partial(_coerce, schema)
    return None


def _is_pydantic(cls: type[Any]) -> bool:
    return any(
        base.__module__.startswith("pydantic") and base.__name__ == "BaseModel"
        for base in cls.__mro__
    )


_FIELDS: weakref.WeakKeyDictionary[type[Any], tuple[str, ...]] = weakref.WeakKeyDictionary()


def object_fields(cls: type[Any]) -> tuple[str, ...]:
    """The annotated attribute names of a class and its bases (empty for builtins)."""
    try:
        return _FIELDS[cls]
    except (KeyError, TypeError):
        pass
    if not isinstance(cls, type):
        raise TypeError(f"Expected a type, got {type(cls)}.")
    keys: list[str] = []
    for base in reversed(cls.__mro__):
        ann = vars(base).get("__annotations__")
        if ann is None:
            ann = getattr(base, "__annotations__", None)
        if ann is None or isinstance(ann, types.GetSetDescriptorType):
            continue
        keys.extend(ann.keys())
    fields = tuple(keys)
    with contextlib.suppress(TypeError):  # a class that cannot be weakly referenced
        _FIELDS[cls] = fields
    return fields


def object_updates(obj: Any, keys: Sequence[str]) -> list[tuple[str, Any]]:
    """The writes an object-shaped update (pydantic model, dataclass) makes: its attributes,
    except ``None`` values of pydantic fields whose default is ``None`` and were not set."""
    fields_set = getattr(obj, "model_fields_set", None)
    defaults: dict[str, Any] = {}
    if fields_set is not None:
        defaults = {k: f.default for k, f in type(obj).model_fields.items()}
    out: list[tuple[str, Any]] = []
    for k in keys:
        value = getattr(obj, k, MISSING)
        if value is MISSING:
            continue
        if (
            value is not None
            or defaults.get(k, MISSING) is not None
            or (fields_set is not None and k in fields_set)
        ):
            out.append((k, value))
    return out
