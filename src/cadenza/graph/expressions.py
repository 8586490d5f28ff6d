"""Condition expressions for routing: safe, declarative, and bounded in time and size.

Conditions are CEL (Common Expression Language) text such as ``amount > 10000``,
``tier in ["gold", "platinum"]`` or ``order.total > 100 && !expedited_shipping``, evaluated
by the ``common-expression-language`` package. CEL cannot call Python code or reach Python
attributes: it sees plain data only, and only the core CEL functions listed in ``FUNCTIONS``.

Bounded in time and memory. The text is limited when it compiles:

* text size: at most ``MAX_LENGTH`` (1,000) characters;
* nesting: at most ``MAX_DEPTH`` (32) levels of parentheses, brackets and braces (the CEL
  parser separately caps any recursion at 96);
* macro nesting: the comprehension macros (``all``, ``exists``, ``exists_one``, ``map``,
  ``filter``) may not nest. CEL has no loops, recursion or exponent operator.

That is not enough: chained macros multiply (``['ab'].map(a, a+a+a+a).map(...)`` grows
fourfold per link), and the engine copies values deeply, converts a state field again on each
use inside a macro's body, recompiles a ``matches`` pattern on every call and takes time
quadratic in the length of ``map`` and ``filter`` ranges. So every expression's cost is
bounded from its syntax tree (:mod:`cadenza.graph._cel_cost`): a shape (entries, values,
bytes of text) for every intermediate value, and the work and memory of every operation, with
constants measured on the engine. The budget is 5 ms of work and 8 MiB of intermediate values:

* when it compiles, an expression over budget even when the fields it reads hold 10 entries
  (100 values, 1,000 bytes) is refused, with the reason (``too costly: evaluation could need
  363 MiB of intermediate values``); so is a ``matches`` pattern that is not a literal;
* when it is evaluated, the data it reads is measured while it is converted, and if the
  bound on that data is over budget the evaluation is refused, before the engine runs, with
  ``too costly on this state: ...``. Reading the input itself (linear in the data) does not
  count, but data nested deeper than 64 levels or holding over 2,000,000 values is refused;
* only the fields an expression selects are converted (``order.total`` reads
  ``order["total"]``, not the rest of ``order``), and :meth:`Expression.atest`, which the
  engine uses, evaluates in a worker thread when the data or the work is large, so the event
  loop is never held for long.

Every failure, at compile or run time, is an :class:`ExpressionError` naming the reason.

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

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cadenza.core.errors import ExpressionError
from cadenza.graph import _cel_engine
from cadenza.graph._cel_cost import Bound, Shape, Unbounded, shape
from cadenza.graph._cel_cost import bound as cost_bound
from cadenza.graph._cel_data import (
    Paths,
    Profile,
    TooLarge,
    Unsupported,
    convert,
    keys_at,
    promote,
)
from cadenza.graph._cel_parse import TOKEN, Node, ParseError, parse
from cadenza.graph._cel_parse import reads as _reads_of

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "Expression", "compile_expression"]

MAX_LENGTH = 1000
MAX_DEPTH = 32
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_NAMES = """has size contains startsWith endsWith matches int uint double string bytes type dyn
    timestamp duration getFullYear getMonth getDate getDayOfMonth getDayOfWeek getDayOfYear
    getHours getMinutes getSeconds getMilliseconds"""
FUNCTIONS = frozenset(_NAMES.split())  # the core CEL functions (cel-rust) and the has() macro
_LOCATION = re.compile(r"<input>:(\d+):(\d+): (.*)")
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")
_CEL_TYPES = {"NoneType": "null", "str": "string", "float": "double", "dict": "map"}
_KEYWORDS = frozenset({"in", "true", "false", "null"})

# An expression is refused when it compiles if it is too costly even on small data: every
# field it reads holding up to 10 entries, 100 values and 1,000 bytes of text. Otherwise it is
# checked when evaluated, against the measured size of the data; data no larger than
# REFERENCE (each field up to 100 entries, 1,000 values and 10,000 bytes, each part of it up
# to 100 entries, 100 values and 1,000 bytes, 6 levels deep) skips that check when the
# expression is within budget on it.
SMALL_LEVELS = ((10, 100, 1_000),) + ((10, 10, 100),) * 5
REFERENCE_LEVELS = ((100, 1_000, 10_000),) + ((100, 100, 1_000),) * 5


def _levels(levels: tuple[tuple[int, int, int], ...]) -> Shape:
    found: Shape | None = None
    for n, items, chars in reversed(levels):
        found = shape(n, items, chars, found)
    assert found is not None
    return found


SMALL, REFERENCE = _levels(SMALL_LEVELS), _levels(REFERENCE_LEVELS)
INLINE_VALUES = 5_000  # more values than this are converted in a worker thread by atest
INLINE_NS = 1_000_000.0  # and work bounded above this runs there too


def _refuse(text: str, message: str, position: int | None = None) -> ExpressionError:
    return ExpressionError(message, expression=text, position=position)


def _scan(text: str) -> tuple[set[str], str]:
    """Enforce the static bounds; return the free names and the all-double rewrite of text."""
    found = [(m.lastgroup, m.group(), m.start()) for m in TOKEN.finditer(text)]
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


class _Offload(Exception):
    """The data is too large to convert on the event loop: evaluate in a thread instead."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled condition; immutable, equal and hashed by its source text."""

    source: str
    variables: frozenset[str] = field(compare=False)
    _program: Any = field(compare=False, repr=False)
    _promoted: Any = field(compare=False, repr=False)
    _reads: dict[str, Paths | None] = field(compare=False, repr=False)
    _tree: Node = field(compare=False, repr=False)
    _bound: Bound | None = field(compare=False, repr=False)  # on REFERENCE, if in budget

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return compile_expression, (self.source,)

    def evaluate(self, state: Mapping[str, Any]) -> Any:
        """Evaluate against ``state`` and return the raw value; errors are ExpressionError."""
        context, _ = self._prepare(state, None)
        return self._execute(context, state)

    def test(self, state: Mapping[str, Any]) -> bool:
        """Evaluate as a condition: the value must be a boolean."""
        return self._boolean(self.evaluate(state))

    async def atest(self, state: Mapping[str, Any]) -> bool:
        """:meth:`test` for a caller on an event loop: evaluated there when it is cheap, and
        in a worker thread when the data is large or the work could take over a millisecond."""
        try:
            context, cost = self._prepare(state, INLINE_VALUES)
        except _Offload:
            return await asyncio.to_thread(self.test, state)
        if cost > INLINE_NS:
            value = await asyncio.to_thread(self._execute, context, state)
        else:
            value = self._execute(context, state)
        return self._boolean(value)

    def _prepare(self, state: Mapping[str, Any], limit: int | None) -> tuple[dict[str, Any], float]:
        """The engine's context for ``state`` and the bound on the work of evaluating it;
        raises ExpressionError if that bound is over the budget."""
        context: dict[str, Any] = {}
        profiles: dict[str, Profile] = {}
        for name, paths in self._reads.items():
            if name not in state:
                continue
            profile = Profile()
            if limit is not None:
                profile.values = -limit  # counts up to MAX_VALUES from here
            try:
                context[name] = convert(state[name], paths, profile)
            except Unsupported as exc:
                message = f"field {name!r} holds a {exc}, which conditions cannot read"
                raise _refuse(self.source, message) from None
            except TooLarge as exc:
                if limit is not None:
                    raise _Offload from None
                raise _refuse(self.source, f"field {name!r} is {exc}") from None
            if limit is not None and profile.values > 0:
                raise _Offload
            profiles[name] = profile
        bound = self._bound
        if bound is None or not all(p.within(REFERENCE_LEVELS) for p in profiles.values()):
            env = {name: profile.shape() for name, profile in profiles.items()}
            bound = cost_bound(self._tree, env, rerun=self._promoted is not None)
            if problem := bound.problem():
                raise _refuse(self.source, f"too costly on this state: {problem}")
        return context, bound.total_ns

    def _execute(self, context: dict[str, Any], state: Mapping[str, Any]) -> Any:
        try:
            return self._program.execute(context)
        except BaseException as exc:
            if not _engine_error(exc):
                raise
            if isinstance(exc, TypeError) and self._promoted is not None:
                try:
                    return self._promoted.execute(promote(context))
                except Exception:
                    pass
            raise self._run_error(exc, state) from exc

    def _boolean(self, value: Any) -> bool:
        if value is True or value is False:
            return value
        name = type(value).__name__
        message = f"condition evaluated to {_CEL_TYPES.get(name, name)}, expected a boolean"
        raise _refuse(self.source, message)

    def _run_error(self, exc: BaseException, state: Mapping[str, Any]) -> ExpressionError:
        text = str(exc)
        first = text.split(". ")[0].rstrip(".")
        first = first[:1].lower() + first[1:]
        if (undefined := _UNDEFINED.search(text)) and undefined[1] in self._reads:
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
            known = keys_at(state, parts)
            if known is not None and key not in known:
                keys = ", ".join(sorted(known)[:30]) or "no fields"
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
        program = _cel_engine.compile(text)
        names, calls = tuple(program.variables()), set(program.functions())
    except BaseException as exc:
        if not _engine_error(exc):
            raise
        raise _syntax_error(text, exc) from None
    if unsupported := sorted(calls & MACROS):
        raise _refuse(text, f"unsupported form of the {unsupported[0]!r} macro")
    try:
        promoted = _cel_engine.compile(promoted_text) if promoted_text != text else program
    except Exception:
        promoted = None
    try:
        tree = parse(text)
        reads = {k: v for k, v in _reads_of(tree).items() if k in names}
        rerun = promoted is not None
        small = cost_bound(tree, dict.fromkeys(reads, SMALL), rerun=rerun)
        bound = cost_bound(tree, dict.fromkeys(reads, REFERENCE), rerun=rerun)
    except Unbounded as exc:
        raise _refuse(text, str(exc)) from None
    except ParseError as exc:
        raise _refuse(text, f"cannot bound the cost of this form ({exc})") from None
    if problem := small.problem():
        data = " even when the fields it reads hold only 10 entries" if reads else ""
        raise _refuse(text, f"too costly: {problem}{data}")
    variables = frozenset(free.intersection(names))
    fast = None if bound.problem() else bound
    return Expression(text, variables, program, promoted, reads, tree, fast)
