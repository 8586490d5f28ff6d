"""State schemas and reducers: how a step's update merges into the run state.

A schema is read from a ``TypedDict`` (or ``dict`` for an open, untyped state). A field
annotated ``Annotated[T, fn]`` with a binary callable ``fn(old, new)`` merges with ``fn``;
every other field is last-write-wins."""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import PydanticUserError, TypeAdapter, ValidationError

from cadenza.core.errors import DefinitionError, InputError

Reducer = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: Any
    reducer: Reducer | None = None

    @property
    def reducer_name(self) -> str:
        if self.reducer is None:
            return "last"
        return _qualname(self.reducer)


@dataclass(frozen=True, slots=True)
class StateSchema:
    """The fields of a run's state. ``open`` schemas (plain ``dict``) accept any key."""

    name: str
    fields: Mapping[str, FieldSpec]
    open: bool = False
    reducers: Mapping[str, Reducer] = field(default_factory=dict)

    @classmethod
    def from_type(cls, tp: Any) -> StateSchema:
        if tp is None or tp is dict or tp is typing.Any:
            return cls(name="dict", fields={}, open=True)
        if not typing.is_typeddict(tp):
            raise DefinitionError(
                f"state schema must be a TypedDict or dict, got {tp!r}", path="state"
            )
        hints = get_type_hints(tp, include_extras=True)
        fields: dict[str, FieldSpec] = {}
        for name, hint in hints.items():
            base, reducer = _split_annotated(hint, name)
            fields[name] = FieldSpec(name, base, reducer)
        reducers = {n: f.reducer for n, f in fields.items() if f.reducer is not None}
        return cls(name=tp.__name__, fields=fields, reducers=reducers)

    def describe(self) -> dict[str, str]:
        return {n: f"{_type_name(f.type)}|{f.reducer_name}" for n, f in self.fields.items()}

    def check_keys(self, keys: typing.Iterable[str]) -> list[str]:
        """Keys that the schema lacks (always empty for an open schema)."""
        if self.open:
            return []
        return [k for k in keys if k not in self.fields]

    def validate_input(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Validate run input field by field; raise :class:`InputError` naming the field."""
        if not isinstance(data, Mapping):
            raise InputError(f"input must be a JSON object, got {type(data).__name__}")
        unknown = self.check_keys(data)
        if unknown:
            raise InputError(
                f"input has {_plural('field', unknown)} {', '.join(map(repr, unknown))} that the "
                f"state schema {self.name} lacks; it has: {', '.join(self.fields) or 'nothing'}"
            )
        if self.open:
            return dict(data)
        out: dict[str, Any] = {}
        for key, value in data.items():
            adapter = _adapter(self.fields[key].type)
            if adapter is None:
                out[key] = value
                continue
            try:
                out[key] = adapter.validate_python(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in (key, *first["loc"]))
                raise InputError(f"input field {where}: {first['msg']}") from None
        return out

    def revive(self, values: dict[str, Any]) -> dict[str, Any]:
        """Turn stored JSON back into typed values (pydantic models, dates, ...) in place,
        field by field; a value that no longer fits its type is left as stored."""
        if self.open:
            return values
        for key, value in values.items():
            spec = self.fields.get(key)
            if spec is None or spec.type in _PLAIN:
                continue
            adapter = _adapter(spec.type)
            if adapter is not None:
                with contextlib.suppress(ValidationError):
                    values[key] = adapter.validate_python(value)
        return values


_PLAIN = frozenset({str, int, float, bool, Any})


def apply_update(
    state: dict[str, Any], update: Mapping[str, Any], reducers: Mapping[str, Reducer]
) -> None:
    """Merge ``update`` into ``state`` in place, through the field reducers."""
    if not reducers:
        state.update(update)
        return
    for key, value in update.items():
        reducer = reducers.get(key)
        if reducer is not None and key in state:
            state[key] = reducer(state[key], value)
        else:
            state[key] = value


def _split_annotated(hint: Any, name: str) -> tuple[Any, Reducer | None]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        reducers = [m for m in meta if callable(m)]
        if len(reducers) > 1:
            raise DefinitionError("more than one reducer in Annotated[...]", path=f"state.{name}")
        return base, (reducers[0] if reducers else None)
    return hint, None


_ADAPTERS: dict[Any, TypeAdapter[Any] | None] = {}


def _adapter(tp: Any) -> TypeAdapter[Any] | None:
    """A validator for ``tp``; ``None`` for types pydantic cannot validate (for example a
    ``typing.TypedDict`` nested in a list on Python < 3.12): such values pass as they are."""
    try:
        return _ADAPTERS[tp]
    except (KeyError, TypeError):
        pass
    try:
        adapter: TypeAdapter[Any] | None = TypeAdapter(tp)
    except PydanticUserError:
        adapter = None
    with contextlib.suppress(TypeError):  # unhashable types are not cached
        _ADAPTERS[tp] = adapter
    return adapter


def _qualname(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _plural(word: str, items: list[str]) -> str:
    return word if len(items) == 1 else word + "s"
