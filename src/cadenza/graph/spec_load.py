"""Reading workflow files: YAML or JSON text to a validated :class:`WorkflowSpec`, with every
problem located (file, line and column, and the JSON path) and explained."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cadenza.errors import DefinitionError
from cadenza.graph.spec import StepSpec, WorkflowSpec

Loc = tuple[str | int, ...]

# libyaml's loader when PyYAML was built with it (the wheels are): ~10x faster, same marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Problem:
    path: Loc
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def json_path(self) -> str:
        out = "$"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


class SpecError(DefinitionError):
    """A workflow file with problems; ``str()`` is one ``FILE:LINE:COL: message`` line each."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for p in self.problems:
            where = f"{self.file}:{p.line}:{p.column}" if p.line else self.file
            out.append(
                f"{where}: {p.json_path}: {p.message}" if p.path else f"{where}: {p.message}"
            )
        return out


class Locator:
    """Where each part of a document is: JSON path -> (line, column), 1-based."""

    def __init__(self, marks: dict[Loc, tuple[int, int]], root: Loc = ()) -> None:
        self.marks = marks
        self.root = root  # a bare list of steps is read as {"steps": [...]}

    def find(self, path: Loc) -> tuple[int | None, int | None]:
        doc_path = self.root + path[1:] if self.root and path[:1] == ("steps",) else path
        while True:
            if doc_path in self.marks:
                return self.marks[doc_path]
            if not doc_path:
                return None, None
            doc_path = doc_path[:-1]

    def problem(self, path: Loc, message: str) -> Problem:
        line, column = self.find(path)
        return Problem(path, message, line, column)


def read_spec(path: str | Path) -> tuple[WorkflowSpec, Locator]:
    """Parse and validate a workflow file; raise :class:`SpecError` listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(file, [Problem((), f"cannot read: {exc.strerror}")]) from None
    data, locator = parse_text(text, file, json_only=file.endswith(".json"))
    return validate_spec(data, locator, file, default_name=Path(path).stem), locator


def parse_text(text: str, file: str, *, json_only: bool = False) -> tuple[Any, Locator]:
    if json_only:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                file, [Problem((), f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)]
            ) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if not json_only:
            data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise SpecError(file, [Problem((), message, line, col)]) from None
    finally:
        loader.dispose()
    marks: dict[Loc, tuple[int, int]] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _walk(node, (), marks, duplicates)
    if duplicates:
        raise SpecError(file, duplicates)
    return data, Locator(marks)


def validate_spec(data: Any, locator: Locator, file: str, *, default_name: str) -> WorkflowSpec:
    if isinstance(data, list):  # the brief's form: a bare list of steps
        locator.root = ()
        locator.root = ("__list__",)
        locator.marks = {("__list__", *k): v for k, v in locator.marks.items()}
        data = {"name": _identifier(default_name), "steps": data}
    elif not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(
            file, [Problem((), f"a workflow is a mapping or a list of steps, got {kind}", 1, 1)]
        )
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(file, list(_problems(exc, data, locator))) from None


def _walk(
    node: yaml.Node, path: Loc, marks: dict[Loc, tuple[int, int]], dup: list[Problem]
) -> None:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                dup.append(Problem((*path, key), f"duplicate key {key!r}", *at))
            seen.add(key)
            _walk(value_node, (*path, key), marks, dup)
            marks[(*path, key)] = at  # a problem with a field points at its key
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), marks, dup)


def _problems(exc: ValidationError, data: Any, locator: Locator) -> Iterator[Problem]:
    found: dict[Loc, Problem] = {}
    for error in exc.errors():
        path, model = _data_path(data, error["loc"])
        if path not in found:  # one problem per place: unions report each alternative
            found[path] = locator.problem(path, _message(error, path, model))
    for path, problem in found.items():
        # A union's alternatives fail at different depths: keep the most specific.
        if not any(other[: len(path)] == path and other != path for other in found):
            yield problem


def _data_path(data: Any, loc: Sequence[Any]) -> tuple[Loc, type[BaseModel]]:
    """The error's location in the document, without pydantic's union-member tags; and the
    model that owns the last field (for suggestions)."""
    path: list[str | int] = []
    node, model = data, WorkflowSpec
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            if part in ("steps", "body", "branches"):
                model = StepSpec
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and not _is_tag(part):
            path.append(part)  # a missing field
            break
    return tuple(path), model


def _is_tag(part: str) -> bool:
    return bool(re.match(r"^[A-Za-z_]+(\[.*\])?$", part)) and (
        part[0].isupper() or "[" in part or part in ("int", "str", "float", "bool", "list", "dict")
    )


def _message(error: Any, path: Loc, model: type[BaseModel]) -> str:
    kind = error["type"]
    field = path[-1] if path and isinstance(path[-1], str) else None
    if kind == "extra_forbidden" and field is not None:
        names = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(field, names, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        return f"unknown field {field!r}{hint}"
    if kind == "missing" and field is not None:
        return f"missing required field {field!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and field in ("name",):
        return "a name is letters, digits, '_' and '-', starting with a letter or '_'"
    return message


def _identifier(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", stem) or "workflow"
    return name if re.match(r"^[A-Za-z_]", name) else f"w_{name}"
