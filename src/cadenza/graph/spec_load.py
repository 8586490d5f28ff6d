"""Reading workflow files: YAML or JSON text to a validated :class:`WorkflowSpec`, with every
problem located (file, line and column, and the JSON path) and explained."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cadenza.graph.spec import StepSpec, WorkflowSpec
from cadenza.graph.spec_read import MAX_SHOWN, Loc, Marks, Problem, SpecError, read_document

_FIELD_FIRST = re.compile(r"^'([a-z_]+)' (?:applies|goes with|maps|is at most)")

__all__ = ["Loc", "Locator", "Problem", "SpecError", "parse_text", "read_spec", "validate_spec"]


class Locator:
    """Where each part of a document is: JSON path -> (line, column), 1-based. A part inside
    a YAML alias is found at the alias."""

    def __init__(self, marks: Marks, root: Loc = ()) -> None:
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
    """Parse and validate a workflow file; raise :class:`SpecError` listing every problem.

    Reading is bounded (see :mod:`cadenza.graph.spec_read`): a hostile file fails here, with
    its location, within a second and a few megabytes."""
    file = str(path)
    data, marks = read_document(path, file)
    locator = Locator(marks)
    return validate_spec(data, locator, file, default_name=Path(path).stem), locator


def parse_text(text: str, file: str, *, json_only: bool = False) -> tuple[Any, Locator]:
    """Parse workflow text already read (JSON with ``json_only``, else YAML), with the same
    bounds and located problems as :func:`read_spec`."""
    if json_only:
        from cadenza.graph._spec_json import parse_json

        data, marks = parse_json(text, file)
    else:
        from cadenza.graph._spec_yaml import parse_yaml

        data, marks = parse_yaml(text, file)
    return data, Locator(marks)


def validate_spec(data: Any, locator: Locator, file: str, *, default_name: str) -> WorkflowSpec:
    if isinstance(data, list):  # the brief's form: a bare list of steps
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


def _problems(exc: ValidationError, data: Any, locator: Locator) -> Iterator[Problem]:
    found: dict[Loc, Problem] = {}
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        path, model = _data_path(data, error["loc"])
        message = _message(error, path, model, suggest=len(found) < MAX_SHOWN)
        path = _at_field(data, path, message)
        if path not in found:  # one problem per place: unions report each alternative
            found[path] = locator.problem(path, message)
    # A union's alternatives fail at different depths: keep the most specific. (Through the
    # set of proper prefixes, since a large document may have tens of thousands of problems.)
    above = {path[:i] for path in found for i in range(len(path))}
    for path, problem in found.items():
        if path not in above:
            yield problem


def _data_path(data: Any, loc: Sequence[Any]) -> tuple[Loc, type[BaseModel]]:
    """The error's location in the document, without pydantic's union-member tags; and the
    model that owns the last field (for suggestions)."""
    path: list[str | int] = []
    node = data
    model: type[BaseModel] = WorkflowSpec
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


def _at_field(data: Any, path: Loc, message: str) -> Loc:
    """A step's problem that names one of its fields first (``'retry' applies to ...``) is
    located at that field rather than at the step."""
    named = _FIELD_FIRST.match(message)
    if named is None:
        return path
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):  # a missing field
            return path
    return (*path, named.group(1)) if isinstance(node, dict) and named.group(1) in node else path


def _is_tag(part: str) -> bool:
    return bool(re.match(r"^[A-Za-z_]+(\[.*\])?$", part)) and (
        part[0].isupper() or "[" in part or part in ("int", "str", "float", "bool", "list", "dict")
    )


def _message(error: Any, path: Loc, model: type[BaseModel], *, suggest: bool) -> str:
    """The problem in words; ``suggest``: with a near-miss field name (only for problems that
    will be shown, since difflib for each of thousands would take seconds)."""
    kind = error["type"]
    field = path[-1] if path and isinstance(path[-1], str) else None
    if kind == "extra_forbidden" and field is not None:
        names = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(field, names, n=1) if suggest else []
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
