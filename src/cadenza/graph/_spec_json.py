"""JSON to plain data with positions, within the bounds of :mod:`cadenza.graph.spec_read`.

The standard ``json`` module gives no positions for values and recurses once per level (5,000
nested brackets raise RecursionError), and reading JSON with a YAML parser for positions
refuses valid JSON (a raw U+009C in a string, a tab before a value). So this is a small
iterative JSON parser: ``json``'s own string scanner and number grammar, an explicit stack,
the position of every value and key, and the same bounds as YAML files.
"""

from __future__ import annotations

import json.decoder
import re
from collections.abc import Callable
from json import JSONDecodeError
from typing import Any

from cadenza.graph.spec_read import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_NODES,
    Loc,
    Marks,
    Problem,
    SpecError,
    shorten,
    too_deep,
    too_long,
    too_many,
)

_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_NOT_JSON = re.compile(r"-?(NaN|Infinity)")
_CLOSE = {"{": "}", "[": "]"}
# json's own string scanner (C): strict about control characters, exact about escapes.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def parse_json(text: str, file: str) -> tuple[Any, Marks]:
    """The JSON value in ``text``, and where each part of it starts (a field: its key)."""
    return _Parser(text, file).parse()


class _Frame:
    __slots__ = ("container", "key", "path")

    def __init__(self, container: dict[str, Any] | list[Any], path: Loc) -> None:
        self.container = container
        self.path = path
        self.key: str = ""

    def child_path(self) -> Loc:
        if isinstance(self.container, list):
            return (*self.path, len(self.container))
        return (*self.path, self.key)


class _Parser:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.marks: Marks = {}
        self.duplicates: list[Problem] = []
        self.total = 0
        self._seen = (0, 1, 0)  # (position, its line, where that line starts): see _at
        self._hint = " (is the file UTF-16? save it as UTF-8)" if "\x00" in text else ""

    def parse(self) -> tuple[Any, Marks]:
        text = self.text
        stack: list[_Frame] = []
        pos = _skip(text, 0)
        while True:
            path = stack[-1].child_path() if stack else ()
            self.marks.setdefault(path, self._at(pos))
            self._count(pos)
            char = text[pos : pos + 1]
            if char in _CLOSE:
                if len(stack) >= MAX_DEPTH:
                    raise too_deep(self.file, *self._at(pos))
                frame = _Frame({} if char == "{" else [], path)
                pos = _skip(text, pos + 1)
                if text[pos : pos + 1] != _CLOSE[char]:
                    stack.append(frame)
                    if char == "{":
                        pos = self._key(frame, pos)
                    continue
                value: Any = frame.container
                pos += 1
            else:
                value, pos = self._scalar(pos)
            # The value is complete: add it to its container, closing those that end here.
            while True:
                if not stack:
                    pos = _skip(text, pos)
                    if pos != len(text):
                        raise self._error("Extra data", pos)
                    if self.duplicates:
                        raise SpecError(self.file, self.duplicates)
                    return value, self.marks
                frame = stack[-1]
                if isinstance(frame.container, list):
                    frame.container.append(value)
                else:
                    frame.container[frame.key] = value
                pos = _skip(text, pos)
                char = text[pos : pos + 1]
                if char == ",":
                    pos = _skip(text, pos + 1)
                    if isinstance(frame.container, dict):
                        pos = self._key(frame, pos)
                    break
                if char != ("]" if isinstance(frame.container, list) else "}"):
                    raise self._error("Expecting ',' delimiter", pos)
                stack.pop()
                value, pos = frame.container, pos + 1

    def _key(self, frame: _Frame, pos: int) -> int:
        """Read ``"key":`` at ``pos``; return where its value starts."""
        text = self.text
        if text[pos : pos + 1] != '"':
            raise self._error("Expecting property name enclosed in double quotes", pos)
        self._count(pos)
        key, end = self._string(pos)
        at = self._at(pos)
        path = (*frame.path, key)
        if key in frame.container:
            self.duplicates.append(Problem(path, f"duplicate key {shorten(key)}", *at))
        self.marks[path] = at  # a problem with a field points at its key
        frame.key = key
        end = _skip(text, end)
        if text[end : end + 1] != ":":
            raise self._error("Expecting ':' delimiter", end)
        return _skip(text, end + 1)

    def _scalar(self, pos: int) -> tuple[Any, int]:
        text = self.text
        char = text[pos : pos + 1]
        if char == '"':
            return self._string(pos)
        number = _NUMBER.match(text, pos)
        if number is not None:
            whole, fraction, exponent = number.groups()
            if fraction is None and exponent is None:
                digits = len(whole.lstrip("-"))
                if digits > MAX_INT_DIGITS:
                    raise too_long(self.file, digits, *self._at(pos))
                return int(whole), number.end()
            return float(number.group()), number.end()
        for word, value in _LITERALS.items():
            if text.startswith(word, pos):
                return value, pos + len(word)
        if _NOT_JSON.match(text, pos):
            raise self._error("NaN and Infinity are not JSON numbers", pos)
        raise self._error("Expecting value", pos)

    def _string(self, pos: int) -> tuple[str, int]:
        try:
            return _scanstring(self.text, pos + 1, True)
        except JSONDecodeError as exc:
            raise self._error(exc.msg, exc.pos) from None

    def _count(self, pos: int) -> None:
        self.total += 1
        if self.total > MAX_NODES:
            raise too_many(self.file, *self._at(pos))

    def _at(self, pos: int) -> tuple[int, int]:
        """Line and column of ``pos``, counting lines on from the last position asked for
        (the parser asks in order), so that a file of newlines costs no index of them."""
        seen, line, start = self._seen if pos >= self._seen[0] else (0, 1, 0)
        breaks = self.text.count("\n", seen, pos)
        if breaks:
            line += breaks
            start = self.text.rindex("\n", seen, pos) + 1
        self._seen = (pos, line, start)
        return line, pos - start + 1

    def _error(self, message: str, pos: int) -> SpecError:
        message = f"invalid JSON: {message}{self._hint}"
        return SpecError(self.file, [Problem((), message, *self._at(pos))])


def _skip(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # `*` always matches
