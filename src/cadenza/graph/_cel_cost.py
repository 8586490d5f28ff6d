"""A bound on the time and memory a CEL expression takes, from its syntax tree and the sizes of
the data it reads (as cel-go's cost estimator does, with the constants of the engine in use).

Every value is described by a :class:`Shape`: how many entries (or characters) it has, how
many values and characters it holds in all, and the shape of its entries. A state field's
shape is measured when it is converted for the engine (:mod:`cadenza.graph._cel_data`); a
literal's is read from the text; every operator and function maps its operands' shapes to
its result's shape and a cost in nanoseconds. Macros multiply their body's cost by their
range's length, so growth through chains (``x.map(a, a + a).map(...)``) multiplies through.

The estimate is an upper bound, not a prediction: every rule rounds up, and a value of
unknown kind is charged as whichever kind costs more. The constants were measured on the
engine (``common-expression-language`` 0.10, cel-rust): notably ``map`` and ``filter`` copy
their accumulated result on every iteration, so they take time quadratic in their range
(about 20 ns x n², 20 ms for 1,000 entries). ``bench/expressions.py`` checks the bound
against measured time and memory on thousands of generated expressions.

Every rule is monotone: a larger input shape never gives a smaller estimate. That is what lets
an expression be checked once, at compile time, against a reference size, and at run time only
when the data is larger than that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cadenza.graph._cel_parse import (
    Call,
    Chain,
    Cond,
    ListLit,
    Lit,
    MapLit,
    Name,
    Nary,
    Node,
    Struct,
    Unary,
)
from cadenza.graph._cel_regex import regex_cost

__all__ = [
    "COST_BUDGET_NS",
    "MEMORY_BUDGET",
    "Bound",
    "Estimate",
    "SCALAR",
    "Shape",
    "Unbounded",
    "bound",
    "estimate",
    "join",
]

COST_BUDGET_NS = 5_000_000.0  # 5 ms of the engine's work, besides reading the input
MEMORY_BUDGET = 8 * 1024 * 1024  # bytes of intermediate values

ITEM_BYTES = 48.0  # one value in the engine, besides its text
_CAP = 1e30  # shapes and costs saturate here, so products stay finite

# Nanoseconds, measured on the engine and rounded up.
NODE = 100.0  # evaluating any node
ITER = 250.0  # one iteration of a macro, besides its body
READ = 1_000.0  # one value of a state field, converted from Python on each use of its name
COPY = 50.0  # one value copied (the engine copies values deeply: lists are not shared)
ACCUMULATE = 150.0  # one value of map's or filter's result, copied on each later iteration
ACCUMULATE_SCALAR = 50.0  # the same for a result of numbers
BYTE = 1.0  # one byte of text scanned, copied or compared
COMPARE = 30.0  # one pair of values compared
PARSE = 2_000.0  # timestamp(), duration()
ZONE = 20_000.0  # a time-zone lookup (getHours("Europe/Paris"))
OUT_VALUE = 1_000.0  # one value of the result converted back to Python
OUT_BYTES = 64.0  # memory of one value of the result in Python
FIXED = 100_000.0  # an evaluation's own overhead in Cadenza and the engine, errors included

_MACROS = {"all": 2, "exists": 2, "exists_one": 2, "filter": 2, "map": 3}
_TEXT_FUNCTIONS = frozenset({"contains", "startsWith", "endsWith"})
_SCALAR_FUNCTIONS = frozenset({"int", "uint", "double", "size"})
_TIME_FUNCTIONS = frozenset({"timestamp", "duration"})


class Unbounded(Exception):
    """The expression uses a form whose cost cannot be bounded (the message says which)."""


def _cap(x: float) -> float:
    return x if x < _CAP else _CAP


@dataclass(frozen=True, slots=True)
class Shape:
    """An upper bound on a value: ``n`` entries (a list's or map's) or code units (a string's
    or bytes'), ``items`` values in all (itself included), ``chars`` bytes of text in all,
    ``elem`` a bound on each entry (a map's keys and values), ``scalar`` when it is certainly
    a number, boolean, null, timestamp or duration."""

    n: float = 0.0
    items: float = 1.0
    chars: float = 0.0
    elem: Shape | None = None
    scalar: bool = False

    @property
    def memory(self) -> float:
        return ITEM_BYTES * self.items + self.chars


SCALAR = Shape(scalar=True)


def shape(n: float, items: float, chars: float, elem: Shape | None) -> Shape:
    return Shape(_cap(n), _cap(items), _cap(chars), elem)


def text(length: float) -> Shape:
    return shape(length, 1.0, length, None)


def collection(n: float, elem: Shape) -> Shape:
    """``n`` entries, each bounded by ``elem``."""
    return shape(n, 1.0 + n * elem.items, n * elem.chars, elem)


def join(a: Shape | None, b: Shape | None) -> Shape | None:
    """The least shape bounding both (``None``: no entries)."""
    if a is None or a is b:
        return b
    if b is None:
        return a
    return Shape(
        max(a.n, b.n),
        max(a.items, b.items),
        max(a.chars, b.chars),
        join(a.elem, b.elem),
        a.scalar and b.scalar,
    )


@dataclass(frozen=True, slots=True)
class Estimate:
    """The result's shape, the time in nanoseconds and the bytes of intermediate values."""

    shape: Shape
    ns: float
    memory: float

    def plus(self, ns: float = 0.0, memory: float = 0.0, result: Shape | None = None) -> Estimate:
        return Estimate(result or self.shape, _cap(self.ns + ns), _cap(self.memory + memory))


def estimate(node: Node, env: Mapping[str, Shape]) -> Estimate:
    """The cost of evaluating ``node`` when each name in ``env`` is a state field holding a
    value of that shape (names missing from ``env`` fail at once when evaluated)."""
    return _Walker(dict(env)).walk(node)


@dataclass(frozen=True, slots=True)
class Bound:
    """At most what one evaluation costs: ``work_ns`` is the expression's own work, which the
    budget limits (a use of a field inside a macro's body, which the engine converts again
    each time, is work); ``total_ns`` adds reading the input once, linear in the data the
    caller already holds; ``memory`` is the bytes of intermediate values."""

    work_ns: float
    total_ns: float
    memory: float

    def problem(self) -> str | None:
        """Why this is over the budget, if it is."""
        if self.memory > MEMORY_BUDGET:
            return (
                f"evaluation could need {_mib(self.memory)} of intermediate values "
                f"(the limit is {_mib(MEMORY_BUDGET)})"
            )
        if self.work_ns > COST_BUDGET_NS:
            took, limit = _ms(self.work_ns), _ms(COST_BUDGET_NS)
            return f"evaluation could take {took} (the limit is {limit})"
        return None


def bound(node: Node, env: Mapping[str, Shape], *, rerun: bool) -> Bound:
    """The :class:`Bound` of evaluating ``node`` on fields of these shapes; ``rerun`` when a
    type error makes evaluation run again with every number a double (twice the work)."""
    found = _Walker(dict(env)).walk(node)
    reading = sum(_read(field) for field in env.values())
    factor = 2.0 if rerun else 1.0
    work = factor * found.ns + OUT_VALUE * found.shape.items + BYTE * found.shape.chars
    total = FIXED + work + (factor + 1.0) * reading  # converted by Cadenza, then the engine
    memory = found.memory + OUT_BYTES * found.shape.items + found.shape.chars
    return Bound(_cap(work), _cap(total), _cap(memory))


def _read(found: Shape) -> float:
    return READ * found.items + BYTE * found.chars


def _mib(size: float) -> str:
    return f"{size / 2**20:.3g} MiB" if size < 1e18 else "unboundedly many MiB"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3g} ms" if ns < 1e18 else "unboundedly long"


def _copy(found: Shape) -> float:
    return COPY * found.items + BYTE * found.chars


class _Walker:
    def __init__(self, env: dict[str, Shape]) -> None:
        self.env = env
        self.bound: dict[str, Shape] = {}  # the variables of the macros around a node
        self.macros = 0  # how many macros are around the node

    def walk(self, node: Node) -> Estimate:
        if isinstance(node, Lit):
            if node.kind in ("string", "bytes"):
                found = text(float(len(node.text.encode())))
                return Estimate(found, NODE, found.memory)
            return Estimate(SCALAR, NODE, 0.0)
        if isinstance(node, Name):
            if (found := self.bound.get(node.name)) is not None:
                return Estimate(found, NODE + _copy(found), found.memory)
            found = self.env.get(node.name, SCALAR)
            if self.macros:  # in a macro's body the engine converts the field on each use
                return Estimate(found, NODE + _read(found), found.memory)
            return Estimate(found, NODE, 0.0)  # the input itself, converted once beforehand
        if isinstance(node, Chain):
            return self.chain(node)
        if isinstance(node, Call):
            if node.name == "has":  # has(a.b): the select, as a test
                return self.walk(node.args[0]).plus(NODE, result=SCALAR)
            return self.function(node.name, [self.walk(a) for a in node.args], node.args)
        if isinstance(node, Nary):
            return self.nary(node)
        if isinstance(node, Unary):
            return self.walk(node.operand).plus(NODE * len(node.ops), result=SCALAR)
        if isinstance(node, Cond):
            parts = [self.walk(n) for arm in node.arms for n in arm] + [self.walk(node.otherwise)]
            result: Shape | None = parts[-1].shape
            for arm in range(1, len(parts) - 1, 2):
                result = join(result, parts[arm].shape)
            return _sum(parts, result or SCALAR, NODE * len(node.arms))
        if isinstance(node, ListLit):
            return self.collection([self.walk(n) for n in node.items], len(node.items), 0.0)
        if isinstance(node, MapLit):
            parts = [self.walk(n) for pair in node.pairs for n in pair]
            keys = sum(parts[k].shape.chars for k in range(0, len(parts), 2))
            return self.collection(parts, len(node.pairs), BYTE * keys)
        if isinstance(node, Struct):
            return _sum([self.walk(n) for n in node.values], SCALAR, NODE)
        raise Unbounded(f"cannot bound the cost of {type(node).__name__}")

    def collection(self, parts: list[Estimate], n: int, hashing: float) -> Estimate:
        elem: Shape | None = None
        for part in parts:
            elem = join(elem, part.shape)
        items = sum(p.shape.items for p in parts)
        chars = sum(p.shape.chars for p in parts)
        found = shape(n, 1.0 + items, chars, elem)
        ns = NODE + _copy(found) + hashing
        return _sum(parts, found, ns, found.memory)

    def chain(self, node: Chain) -> Estimate:
        current = self.walk(node.base)
        for op in node.ops:
            if op[0] == "field":
                entry = current.shape.elem or SCALAR
                ns = NODE + BYTE * 32 + _copy(entry)
                current = current.plus(ns, entry.memory, entry)
            elif op[0] == "index":
                assert isinstance(op[1], Node)
                index = self.walk(op[1])
                entry = current.shape.elem or SCALAR
                ns = index.ns + NODE + BYTE * index.shape.chars + _copy(entry)
                current = current.plus(ns, index.memory + entry.memory, entry)
            else:
                name, args = op[1], op[2]
                assert isinstance(name, str) and isinstance(args, tuple)
                if name in _MACROS and args and isinstance(args[0], Name):
                    current = self.macro(name, current, args[0].name, args[1:])
                else:
                    walked = [current, *(self.walk(a) for a in args)]
                    current = self.function(name, walked, (None, *args))
        return current

    def macro(self, name: str, target: Estimate, var: str, body: Sequence[Node]) -> Estimate:
        if not 1 <= len(body) <= _MACROS[name] - 1:
            raise Unbounded(f"unsupported form of the {name!r} macro")
        n = target.shape.n
        entry = target.shape.elem or SCALAR
        saved = self.bound.get(var)
        self.bound[var] = entry
        self.macros += 1
        try:
            parts = [self.walk(b) for b in body]
        finally:
            self.macros -= 1
            if saved is None:
                del self.bound[var]
            else:
                self.bound[var] = saved
        per_item = ITER + _copy(entry) + sum(p.ns for p in parts)
        temporaries = sum(p.memory for p in parts)
        if name in ("all", "exists", "exists_one"):
            return target.plus(n * per_item, temporaries, SCALAR)
        if name == "map":
            entry = parts[-1].shape
        found = collection(n, entry)
        per_copy = ACCUMULATE_SCALAR if entry.scalar else ACCUMULATE * entry.items
        ns = n * per_item + n * n / 2 * (per_copy + BYTE * entry.chars)
        return target.plus(ns, temporaries + 2 * found.memory, found)

    def function(self, name: str, args: list[Estimate], nodes: Sequence[Node | None]) -> Estimate:
        chars = sum(a.shape.chars for a in args)
        if name in _SCALAR_FUNCTIONS:
            result, ns = SCALAR, BYTE * chars
        elif name == "type":
            result, ns = text(16.0), 0.0
        elif name == "dyn" and args:
            result, ns = args[0].shape, _copy(args[0].shape)
        elif name in ("string", "bytes"):
            result = text(chars + 40.0)
            ns = BYTE * chars + _copy(result)
        elif name in _TEXT_FUNCTIONS:
            result, ns = SCALAR, 2 * BYTE * chars
        elif name == "matches":
            result, ns = SCALAR, self.matching(args, nodes)
        elif name in _TIME_FUNCTIONS:
            result, ns = SCALAR, PARSE + BYTE * chars
        elif name.startswith("get"):
            result, ns = SCALAR, (ZONE if len(args) > 1 else 0.0) + BYTE * chars
        else:
            raise Unbounded(f"cannot bound the cost of the function {name!r}")
        return _sum(args, result, NODE + ns, result.memory)

    def matching(self, args: list[Estimate], nodes: Sequence[Node | None]) -> float:
        pattern = nodes[-1] if len(nodes) == 2 else None
        if not isinstance(pattern, Lit) or pattern.kind != "string":
            raise Unbounded(
                "matches() takes its pattern as a string literal: the cost of a pattern "
                "from data cannot be bounded"
            )
        value = _literal_value(pattern.text)
        try:
            cost = regex_cost(value)
        except ValueError as exc:
            raise Unbounded(f"cannot bound the cost of the pattern {value!r}: {exc}") from None
        return cost.compile_ns + cost.char_ns * args[0].shape.chars

    def nary(self, node: Nary) -> Estimate:
        parts = [self.walk(n) for n in node.operands]
        current = parts[0].shape
        ns = NODE * len(node.ops)
        memory = 0.0
        for op, part in zip(node.ops, parts[1:], strict=True):
            right = part.shape
            if op == "in":
                ns += COMPARE * right.items + BYTE * (right.chars + current.chars)
                current = SCALAR
            elif op in ("<", "<=", ">", ">=", "==", "!="):
                ns += COMPARE * min(current.items, right.items)
                ns += BYTE * min(current.chars, right.chars)
                current = SCALAR
            elif op == "+" and not (current.scalar or right.scalar):
                items, chars = current.items + right.items, current.chars + right.chars
                current = shape(current.n + right.n, items, chars, join(current.elem, right.elem))
                ns += _copy(current)
                memory += current.memory
            else:  # arithmetic, and the logical operators (their operands are walked anyway)
                current = SCALAR
        return _sum(parts, current, ns, memory)


def _sum(parts: Sequence[Estimate], result: Shape, ns: float, memory: float = 0.0) -> Estimate:
    total_ns = ns + sum(p.ns for p in parts)
    total_memory = memory + sum(p.memory for p in parts)
    return Estimate(result, _cap(total_ns), _cap(total_memory))


def _literal_value(token: str) -> str:
    """The value of a CEL string literal, read by the engine itself."""
    from cadenza.graph._cel_engine import compile as cel_compile

    value = cel_compile(token).execute({})
    assert isinstance(value, str)
    return value
