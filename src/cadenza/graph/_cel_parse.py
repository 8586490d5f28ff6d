"""CEL text to a small syntax tree, for the cost estimate of :mod:`cadenza.graph._cel_cost`.

The CEL engine (``common-expression-language``) compiles and runs expressions but does not
show its syntax tree, and the cost of an expression can only be bounded from its structure.
This parser follows the CEL grammar (cel-spec ``langdef.md``) for the forms the engine
accepts. It runs only on text the engine has already compiled, so it need not report syntax
errors well; text it cannot read is refused by the caller.

Chains of one kind are flat (``a.b.c[0]`` is one :class:`Chain`, ``1 + 2 + 3`` one
:class:`Nary`, ``!!x`` one :class:`Unary`, ``a ? b : c ? d : e`` one :class:`Cond`), so
walking a tree of 1,000 characters recurses only as deep as its brackets nest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "TOKEN",
    "Call",
    "Chain",
    "Cond",
    "ListLit",
    "Lit",
    "MapLit",
    "Name",
    "Node",
    "Nary",
    "Struct",
    "Unary",
    "parse",
    "reads",
]

TOKEN = re.compile(
    r"""(?P<s>(?:[bB]?[rR]|[rR][bB])(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")"""
    r"""|[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'"""
    r"""|"(?:\\.|[^"\\\n])*"))|(?P<c>//[^\n]*)|(?P<f>(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?"""
    r"|\d+[eE][+-]?\d+)|(?P<u>(?:0[xX][0-9a-fA-F]+|\d+)[uU])|(?P<i>0[xX][0-9a-fA-F]+|\d+)"
    r"|(?P<n>[A-Za-z_][A-Za-z0-9_]*)|(?P<o>\S)",
    re.DOTALL,
)
_PAIRS = frozenset({"&&", "||", "==", "!=", "<=", ">="})
_RELATIONS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: ``kind`` is int, uint, double, bool, null, string or bytes; ``text`` is the
    token as written (a string's length bounds its value's)."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    """A global function call: ``size(x)``, ``has(a.b)``."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """``base`` followed by member accesses: ``("field", name)``, ``("index", node)`` or
    ``("call", name, args)`` (a receiver call, macros included)."""

    base: Node
    ops: tuple[tuple[object, ...], ...]


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    pairs: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Struct:
    """A message construction ``T{f: v}`` (the engine refuses these when run)."""

    values: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary:
    ops: str  # "!!" or "--": one character per operator
    operand: Node


@dataclass(frozen=True, slots=True)
class Nary:
    """Left-associative operators of one precedence level: ``operands[0] ops[0] operands[1]
    ...``."""

    operands: tuple[Node, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cond:
    """``c1 ? v1 : c2 ? v2 : otherwise``."""

    arms: tuple[tuple[Node, Node], ...]
    otherwise: Node


Node = Lit | Name | Call | Chain | ListLit | MapLit | Struct | Unary | Nary | Cond


def tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of each token, comments dropped, two-character operators joined."""
    out: list[tuple[str, str, int]] = []
    for match in TOKEN.finditer(text):
        kind, tok, pos = match.lastgroup or "o", match.group(), match.start()
        if kind == "c":
            continue
        if kind == "o" and out and out[-1][0] == "o":
            last_kind, last, last_pos = out[-1]
            if last_pos + len(last) == pos and last + tok in _PAIRS:
                out[-1] = (last_kind, last + tok, last_pos)
                continue
        out.append((kind, tok, pos))
    return out


class ParseError(Exception):
    """The text is not in the grammar this parser knows."""


def parse(text: str) -> Node:
    """The syntax tree of CEL ``text``; raises :class:`ParseError` if it cannot be read."""
    parser = _Parser(tokens(text))
    node = parser.expr()
    if parser.at < len(parser.toks):
        raise ParseError(f"unexpected {parser.toks[parser.at][1]!r}")
    return node


class _Parser:
    def __init__(self, toks: list[tuple[str, str, int]]) -> None:
        self.toks = toks
        self.at = 0

    def peek(self, ahead: int = 0) -> str:
        at = self.at + ahead
        return self.toks[at][1] if at < len(self.toks) else ""

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.at >= len(self.toks):
            raise ParseError("unexpected end of text")
        tok = self.toks[self.at]
        if expected is not None and tok[1] != expected:
            raise ParseError(f"expected {expected!r}, found {tok[1]!r}")
        self.at += 1
        return tok

    def expr(self) -> Node:
        arms: list[tuple[Node, Node]] = []
        node = self.binary(0)
        while self.peek() == "?":
            self.take()
            then = self.binary(0)
            self.take(":")
            arms.append((node, then))
            node = self.binary(0)
        return Cond(tuple(arms), node) if arms else node

    _LEVELS: tuple[frozenset[str], ...] = (
        frozenset({"||"}),
        frozenset({"&&"}),
        _RELATIONS,
        frozenset({"+", "-"}),
        frozenset({"*", "/", "%"}),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        operands = [self.binary(level + 1)]
        ops: list[str] = []
        while (op := self.peek()) in self._LEVELS[level] and self._is_operator():
            self.take()
            ops.append(op)
            operands.append(self.binary(level + 1))
        return Nary(tuple(operands), tuple(ops)) if ops else operands[0]

    def _is_operator(self) -> bool:
        return self.toks[self.at][0] in ("o", "n")

    def unary(self) -> Node:
        ops = ""
        while self.peek() in ("!", "-") and self.toks[self.at][0] == "o":
            ops += self.take()[1]
        node = self.member()
        return Unary(ops, node) if ops else node

    def member(self) -> Node:
        base = self.primary()
        ops: list[tuple[object, ...]] = []
        while True:
            tok = self.peek()
            if tok == ".":
                self.take()
                name = self.take()[1]
                if self.peek() == "(":
                    ops.append(("call", name, self.args(")")))
                else:
                    ops.append(("field", name))
            elif tok == "[":
                self.take()
                ops.append(("index", self.expr()))
                self.take("]")
            elif tok == "{" and (ops or isinstance(base, Name)):
                base, ops = Struct(self.struct_fields()), []
            else:
                break
        return Chain(base, tuple(ops)) if ops else base

    def struct_fields(self) -> tuple[Node, ...]:
        self.take("{")
        values: list[Node] = []
        while self.peek() != "}":
            self.take()  # the field name
            self.take(":")
            values.append(self.expr())
            if self.peek() != ",":
                break
            self.take(",")
        self.take("}")
        return tuple(values)

    def args(self, close: str) -> tuple[Node, ...]:
        self.take()  # the opening bracket
        items: list[Node] = []
        while self.peek() != close:
            items.append(self.expr())
            if self.peek() != ",":
                break
            self.take(",")
        self.take(close)
        return tuple(items)

    def primary(self) -> Node:
        kind, tok, _ = self.take()
        if kind == "o" and tok == ".":  # a leading dot: a name from the root scope
            kind, tok, _ = self.take()
        if kind == "n":
            if tok in ("true", "false"):
                return Lit("bool", tok)
            if tok == "null":
                return Lit("null", tok)
            if self.peek() == "(":
                return Call(tok, self.args(")"))
            return Name(tok)
        if kind == "s":
            return Lit("bytes" if tok[:2].lower() in ("b'", 'b"', "br", "rb") else "string", tok)
        if kind in ("i", "u", "f"):
            return Lit({"i": "int", "u": "uint", "f": "double"}[kind], tok)
        if tok == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok == "[":
            self.at -= 1
            return ListLit(self.args("]"))
        if tok == "{":
            pairs: list[tuple[Node, Node]] = []
            while self.peek() != "}":
                key = self.expr()
                self.take(":")
                pairs.append((key, self.expr()))
                if self.peek() != ",":
                    break
                self.take(",")
            self.take("}")
            return MapLit(tuple(pairs))
        raise ParseError(f"unexpected {tok!r}")


def reads(node: Node) -> dict[str, dict[str, object] | None]:
    """What the expression reads of each free name: ``None`` for all of it, else a tree of
    the fields it selects (``{"total": None}`` for ``order.total``), so that only those are
    converted for the engine."""
    found: dict[str, dict[str, object] | None] = {}
    _reads(node, frozenset(), found)
    return found


def _read(found: dict[str, dict[str, object] | None], name: str, path: list[str]) -> None:
    if name in found and found[name] is None:
        return
    if not path:
        found[name] = None
        return
    tree = found.setdefault(name, {})
    assert tree is not None
    for field in path[:-1]:
        below = tree.setdefault(field, {})
        if below is None:
            return
        assert isinstance(below, dict)
        tree = below
    tree[path[-1]] = None


def _reads(node: Node, bound: frozenset[str], found: dict[str, dict[str, object] | None]) -> None:
    if isinstance(node, Name):
        if node.name not in bound:
            _read(found, node.name, [])
    elif isinstance(node, Chain):
        if isinstance(node.base, Name):
            if node.base.name not in bound:
                path: list[str] = []
                for op in node.ops:
                    if op[0] != "field":
                        break
                    path.append(str(op[1]))
                _read(found, node.base.name, path)
        else:
            _reads(node.base, bound, found)
        for op in node.ops:
            if op[0] == "index":
                assert isinstance(op[1], Node)
                _reads(op[1], bound, found)
            elif op[0] == "call":
                args = op[2]
                assert isinstance(args, tuple)
                inner = bound
                if args and isinstance(args[0], Name) and len(args) > 1:
                    inner = bound | {args[0].name}  # a macro's variable (harmless otherwise)
                    args = args[1:]
                for arg in args:
                    _reads(arg, inner, found)
    else:
        for child in _children(node):
            _reads(child, bound, found)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Call | ListLit):
        return node.args if isinstance(node, Call) else node.items
    if isinstance(node, MapLit):
        return tuple(n for pair in node.pairs for n in pair)
    if isinstance(node, Struct):
        return node.values
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Nary):
        return node.operands
    if isinstance(node, Cond):
        return (*(n for arm in node.arms for n in arm), node.otherwise)
    return ()
