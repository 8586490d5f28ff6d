"""Condition expressions for routing: safe, declarative, and bounded in time and size.

Conditions are CEL (Common Expression Language) text such as ``amount > 10000``,
``tier in ["gold", "platinum"]`` or ``order.total > 100 && !expedited_shipping``, evaluated
by the ``common-expression-language`` package. CEL cannot call Python code or reach Python
attributes: it sees plain data only, and only the core CEL functions listed in ``FUNCTIONS``.

Bounded in time and size, by construction and refused at compile time otherwise:

* text size: at most ``MAX_LENGTH`` (1,000) characters;
* nesting: at most ``MAX_DEPTH`` (32) levels of parentheses, brackets and braces (the CEL
  parser separately caps any recursion at 96);
* macro nesting: the comprehension macros (``all``, ``exists``, ``exists_one``, ``map``,
  ``filter``) may not nest, so each body runs once per element of one range. Without macros
  evaluation is linear in text size x data size; a macro body that itself walks the data
  (``items.all(x, x in items)``) makes it at worst quadratic in data size, never worse.
  CEL has no loops, recursion or exponent operator (``2 ** 10`` is a syntax error).

Names starting with ``__`` are refused outright. ``ExpressionError.position`` is the 1-based
column of the problem (for multi-line text, the 1-based character offset in the whole text).

Numbers: CEL has no implicit int/double conversion in arithmetic (``1 + 2.5`` is an error;
comparisons such as ``1 < 2.5`` do work). Evaluation first runs with exact types, so ints stay
exact int64 (``7 / 2 == 3``, ``items[0]`` works, big ids compare exactly). Only if that fails
with a type error is the expression re-run with every number promoted to double: int values
in the state become floats and int literals become double literals (``amount * 1.1`` works
for an int ``amount``, ``total + 1`` for a float ``total``). Function results such as
``size(x)`` stay int; write ``double(size(x))`` to mix them with doubles.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any

import cel
from pydantic import BaseModel

from cadenza.errors import ExpressionError

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "Expression", "compile_expression"]

MAX_LENGTH = 1000
MAX_DEPTH = 32
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_NAMES = """has size contains startsWith endsWith matches int uint double string bytes type dyn
    timestamp duration getFullYear getMonth getDate getDayOfMonth getDayOfWeek getDayOfYear
    getHours getMinutes getSeconds getMilliseconds"""
FUNCTIONS = frozenset(_NAMES.split())  # the core CEL functions (cel-rust) and the has() macro
_TOKEN = re.compile(
    r"""(?P<s>(?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")"""
    r"""|[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'"""
    r"""|"(?:\\.|[^"\\\n])*"))|(?P<c>//[^\n]*)|(?P<f>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?"""
    r"|\d+[eE][+-]?\d+)|(?P<u>(?:0[xX][0-9a-fA-F]+|\d+)[uU])|(?P<i>0[xX][0-9a-fA-F]+|\d+)"
    r"|(?P<n>[A-Za-z_][A-Za-z0-9_]*)|(?P<o>\S)",
    re.DOTALL,
)
_LOCATION = re.compile(r"<input>:(\d+):(\d+): (.*)")
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")
_CEL_TYPES = {"NoneType": "null", "str": "string", "float": "double", "dict": "map"}
_KEYWORDS = frozenset({"in", "true", "false", "null"})
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, datetime, timedelta})


class _Unsupported(Exception):
    """A state value has no CEL equivalent."""


def _to_cel(value: Any) -> Any:
    """Convert a state value to plain data CEL accepts (raises _Unsupported otherwise)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, Enum):
        return _to_cel(value.value)
    if isinstance(value, Mapping):
        return {_key(k): _to_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_cel(v) for v in value]
    for base in (int, float, str, bytes):  # subclasses of the plain types
        if isinstance(value, base):
            return base(value)
    if isinstance(value, datetime | timedelta):
        return value
    if isinstance(value, BaseModel):
        return _to_cel(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_cel(dataclasses.asdict(value))
    if isinstance(value, date):
        return value.isoformat()
    raise _Unsupported(kind.__name__)


def _key(key: Any) -> Any:
    key = key.value if isinstance(key, Enum) else key
    if type(key) not in (str, int, bool):
        raise _Unsupported(f"{type(key).__name__} (as a map key)")
    return key


def _promote(value: Any) -> Any:
    """The same data with every int (not bool) turned into a float."""
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is dict:
        return {k: _promote(v) for k, v in value.items()}
    if kind is list:
        return [_promote(v) for v in value]
    return value


def _refuse(text: str, message: str, position: int | None = None) -> ExpressionError:
    return ExpressionError(message, expression=text, position=position)


def _scan(text: str) -> tuple[set[str], str]:
    """Enforce the static bounds; return the free names and the all-double rewrite of text."""
    found = [(m.lastgroup, m.group(), m.start()) for m in _TOKEN.finditer(text)]
    tokens = [token for token in found if token[0] != "c"]  # drop comments
    stack: list[str | None] = []  # one entry per open bracket: a macro's bound name, or None
    free: set[str] = set()
    pieces: list[str] = []
    done = 0
    for k, (kind, tok, pos) in enumerate(tokens):
        prev = tokens[k - 1][1] if k else ""
        nxt = tokens[k + 1][1] if k + 1 < len(tokens) else ""
        if tok in ("(", "[", "{"):
            if len(stack) >= MAX_DEPTH:
                raise _refuse(text, f"nesting deeper than {MAX_DEPTH} levels", pos + 1)
            macro = tok == "(" and prev in MACROS and k >= 2 and tokens[k - 2][1] == "."
            if macro and any(bound is not None for bound in stack):
                where = tokens[k - 1][2] + 1
                raise _refuse(text, "comprehension macros cannot be nested", where)
            stack.append(nxt if macro else None)
        elif tok in (")", "]", "}") and stack:
            stack.pop()
        elif kind == "n" and tok not in _KEYWORDS:
            if tok.startswith("__"):
                raise _refuse(text, f"names starting with '__' are not allowed ({tok})", pos + 1)
            if nxt == "(" and tok not in FUNCTIONS and not (prev == "." and tok in MACROS):
                raise _refuse(text, f"unknown function {tok!r}", pos + 1)
            if prev != "." and nxt != "(" and tok not in stack:
                free.add(tok)
        elif kind == "i":
            number = int(tok, 16) if tok[:2] in ("0x", "0X") else int(tok)
            pieces += [text[done:pos], f"{number}.0"]
            done = pos + len(tok)
    return free, "".join(pieces) + text[done:]


def _syntax_error(text: str, exc: BaseException) -> ExpressionError:
    if (found := _LOCATION.search(str(exc))) is None:
        return _refuse(text, f"cannot parse: {exc!s}".splitlines()[0])
    line, column, message = int(found[1]), int(found[2]), found[3].strip()
    position = sum(len(part) + 1 for part in text.split("\n")[: line - 1]) + column
    message = message.removeprefix("Syntax error: ")
    if inner := re.search(r'msg: "([^"]*)"', message):
        message = inner[1]
    message = re.sub(r"expecting \{.*IDENTIFIER.*\}", "expecting a value", message)
    return _refuse(text, f"syntax error: {message}", position)


def _engine_error(exc: BaseException) -> bool:
    """True for errors the CEL engine raises, including a Rust panic (a BaseException)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled condition; immutable, equal and hashed by its source text."""

    source: str
    variables: frozenset[str] = field(compare=False)
    _program: Any = field(compare=False, repr=False)
    _promoted: Any = field(compare=False, repr=False)
    _names: tuple[str, ...] = field(compare=False, repr=False)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return compile_expression, (self.source,)

    def evaluate(self, state: Mapping[str, Any]) -> Any:
        """Evaluate against ``state`` and return the raw value; errors are ExpressionError."""
        context: dict[str, Any] = {}
        for name in self._names:
            if name in state:
                try:
                    context[name] = _to_cel(state[name])
                except _Unsupported as exc:
                    message = f"field {name!r} holds a {exc}, which conditions cannot read"
                    raise _refuse(self.source, message) from None
        try:
            return self._program.execute(context)
        except BaseException as exc:
            if not _engine_error(exc):
                raise
            if isinstance(exc, TypeError) and self._promoted is not None:
                try:
                    return self._promoted.execute(_promote(context))
                except Exception:
                    pass
            raise self._run_error(exc, state) from exc

    def test(self, state: Mapping[str, Any]) -> bool:
        """Evaluate as a condition: the value must be a boolean."""
        value = self.evaluate(state)
        if value is True or value is False:
            return value
        name = type(value).__name__
        message = f"condition evaluated to {_CEL_TYPES.get(name, name)}, expected a boolean"
        raise _refuse(self.source, message)

    def _run_error(self, exc: BaseException, state: Mapping[str, Any]) -> ExpressionError:
        text = str(exc)
        first = text.split(". ")[0].rstrip(".")
        first = first[:1].lower() + first[1:]
        if (undefined := _UNDEFINED.search(text)) and undefined[1] in self._names:
            keys = ", ".join(sorted(str(key) for key in state)[:30])
            has = f"the state has: {keys}" if keys else "the state is empty"
            message = f"unknown field {undefined[1]!r}; {has}"
        elif undefined:
            message = f"function {undefined[1]!r} does not accept these arguments"
        elif isinstance(exc, KeyError):
            message = self._missing_key(str(exc.args[0]) if exc.args else text, state)
        elif isinstance(exc, ZeroDivisionError):
            message = "division by zero"
        elif isinstance(exc, TypeError):
            message = f"type error: {first}"
        else:
            message = first or type(exc).__name__
        return _refuse(self.source, message)

    def _missing_key(self, key: str, state: Mapping[str, Any]) -> str:
        for chain in re.finditer(r"\b([A-Za-z_][\w.]*)\." + re.escape(key) + r"\b", self.source):
            parts = chain[1].split(".")
            try:
                node = _to_cel(state.get(parts[0]))
            except _Unsupported:
                continue
            for part in parts[1:]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and key not in node:
                keys = ", ".join(sorted(str(k) for k in node)[:30]) or "no fields"
                return f"unknown field '{chain[1]}.{key}'; '{chain[1]}' has: {keys}"
        return f"unknown field or key {key!r} (test with has(...) or 'key' in map first)"


@lru_cache(maxsize=1024)
def compile_expression(text: str) -> Expression:
    """Compile condition text once; raises ExpressionError (with a position) if it is refused."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        message = f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}"
        raise _refuse(text[:60] + "...", message)
    if not text.strip():
        raise _refuse(text, "expression is empty")
    free, promoted_text = _scan(text)
    try:
        program = cel.compile(text)
        names, calls = tuple(program.variables()), set(program.functions())
    except BaseException as exc:
        if not _engine_error(exc):
            raise
        raise _syntax_error(text, exc) from None
    if unsupported := sorted(calls & MACROS):
        raise _refuse(text, f"unsupported form of the {unsupported[0]!r} macro")
    try:
        promoted = cel.compile(promoted_text) if promoted_text != text else program
    except Exception:
        promoted = None
    variables = frozenset(free.intersection(names))
    return Expression(text, variables, program, promoted, names)
