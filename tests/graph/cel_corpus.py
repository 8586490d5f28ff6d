"""Generated condition expressions and states, hostile on purpose: chains of macros whose
bodies grow strings and lists, fan-outs compared with themselves, costly regular
expressions, large and deeply nested data. Used by the cost tests and by
``bench/expressions.py`` (which runs the same corpus at full size and measures it)."""

from __future__ import annotations

import random
from typing import Any

from cadenza.graph._cel_cost import Shape, estimate
from cadenza.graph._cel_data import Profile, convert
from cadenza.graph.expressions import Expression

NAMES = ("xs", "s", "n", "m", "recs", "deep", "f")
PATTERNS = (
    "a+",
    "^[a-z0-9_]+$",
    "(a|b)*c",
    "(a|b){1000}c",
    "\\\\w{50}",
    ".{10000}",
    "[^x]{3000}",
    "\\\\d{3}-\\\\d{4}",
    "(?i)hello",
    "((a|b){20}){20}c",
    "\\\\pL+",
)
HOSTILE = (
    "['ab']" + ".map(a, a+a+a+a)" * 13,
    "['ab']" + ".map(a, a+a+a+a)" * 14,
    "[1]" + ".map(a, [a,a,a,a,a,a,a,a,a,a])" * 6 + " == [1]" + ".map(a, [a,a,a,a,a,a,a,a,a,a])" * 6,
    "xs.map(x, xs).map(y, y + y + y + y).map(z, z + z + z + z).size() > 0",
    "s.matches('\\\\w{60}')",
    "['" + "a" * 200 + "']" + ".map(a, a + a)" * 20 + " == []",
)


def state(rng: random.Random) -> dict[str, Any]:
    """A state with fields of random size: small most of the time, sometimes large."""
    size = rng.choice((0, 1, 3, 10, 50, 200, 2_000))
    deep: Any = rng.randint(0, 9)
    for _ in range(rng.choice((0, 2, 10, 40, 90))):
        deep = [deep]
    return {
        "xs": [rng.randint(-5, 5) for _ in range(size)],
        "s": "".join(rng.choice("abcxé") for _ in range(rng.choice((0, 5, 100, 5_000)))),
        "n": rng.randint(-10, 10),
        "f": rng.random() * 10,
        "m": {k: rng.randint(0, 3) for k in rng.sample("abcdefgh", rng.randint(0, 8))},
        "recs": [
            {"id": i, "name": "r" * rng.randint(0, 20), "tags": ["t"] * rng.randint(0, 3)}
            for i in range(rng.choice((0, 2, 30, 300)))
        ],
        "deep": deep,
    }


class _Gen:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.macro = False  # inside a macro body (nested macros are refused; sometimes try)

    def expr(self, depth: int, scope: tuple[str, ...] = ()) -> str:
        rng = self.rng
        if depth <= 0:
            return self.atom(scope)
        choice = rng.randrange(12)
        if choice == 0:
            return f"{rng.choice(('!', '-'))}{self.expr(depth - 1, scope)}"
        if choice in (1, 2):
            op = rng.choice(("+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "in"))
            return f"{self.expr(depth - 1, scope)} {op} {self.expr(depth - 1, scope)}"
        if choice == 3:
            c, a, b = (self.expr(depth - 1, scope) for _ in range(3))
            return f"({c} ? {a} : {b})"
        if choice == 4:
            items = ", ".join(self.expr(depth - 1, scope) for _ in range(rng.randint(0, 10)))
            return f"[{items}]"
        if choice == 5:
            return self.call(depth, scope)
        if choice in (6, 7):
            return self.chain(depth, scope)
        if choice == 8:
            return f"{self.atom(scope)}[{self.expr(depth - 1, scope)}]"
        if choice == 9:
            return f"has(m.{rng.choice('abz')})"
        return f"({self.expr(depth - 1, scope)})"

    def atom(self, scope: tuple[str, ...]) -> str:
        rng = self.rng
        kind = rng.randrange(8)
        if kind < 3:
            return rng.choice(scope + NAMES)
        if kind == 3:
            return str(rng.randint(-3, 100))
        if kind == 4:
            return repr("".join(rng.choice("ab") for _ in range(rng.randint(0, 8))))
        if kind == 5:
            return rng.choice(("true", "false", "null", "1.5", "2u"))
        if kind == 6:
            return f"m.{rng.choice('abcz')}"
        return f"recs[{rng.randint(0, 3)}].name"

    def call(self, depth: int, scope: tuple[str, ...]) -> str:
        rng = self.rng
        arg = self.expr(depth - 1, scope)
        name = rng.choice(
            ("size", "string", "int", "double", "type", "contains", "startsWith", "matches")
        )
        if name == "contains" or name == "startsWith":
            return f"{arg}.{name}({self.expr(depth - 1, scope)})"
        if name == "matches":
            return f"{arg}.matches('{rng.choice(PATTERNS)}')"
        return f"{name}({arg})"

    def chain(self, depth: int, scope: tuple[str, ...]) -> str:
        rng = self.rng
        text = rng.choice(("xs", "s", "recs", "m", "[1, 2, 3]", "['ab']", "deep"))
        for _ in range(rng.choice((1, 1, 2, 3, 5, 8, 12))):
            macro = rng.choice(("map", "map", "filter", "all", "exists", "exists_one", "map3"))
            var = rng.choice("abvw")
            nested = self.macro or rng.random() < 0.05
            saved, self.macro = self.macro, True
            try:
                body = self.body(var, depth, (*scope, var), nested)
                if macro == "map3":
                    text += f".map({var}, {self.expr(1, (*scope, var))}, {body})"
                else:
                    text += f".{macro}({var}, {body})"
            finally:
                self.macro = saved
            if macro in ("all", "exists", "exists_one"):
                break
        if rng.random() < 0.3:
            text = f"{text} == {text}"
        return text

    def body(self, var: str, depth: int, scope: tuple[str, ...], nested: bool) -> str:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:
            return " + ".join([var] * rng.randint(2, 5))
        if kind == 1:
            return "[" + ", ".join([var] * rng.randint(2, 10)) + "]"
        if kind == 2 and nested:
            return f"xs.exists(q, q == {var})"
        if kind == 3:
            return f"{var} in xs"
        return self.expr(max(depth - 1, 1), scope)


def expression(rng: random.Random) -> str:
    """One generated expression (occasionally one of the known hostile ones)."""
    if rng.random() < 0.02:
        return rng.choice(HOSTILE)
    return _Gen(rng).expr(rng.randint(1, 4))


def bound(expression: Expression, data: dict[str, Any]) -> Shape:
    """The result's estimated shape for ``data`` (as evaluation computes it)."""
    env = {}
    for name, paths in expression._reads.items():
        if name in data:
            profile = Profile()
            convert(data[name], paths, profile)
            env[name] = profile.shape()
    return estimate(expression._tree, env).shape


def measure(value: Any) -> tuple[int, int]:
    """The values and bytes of text in an evaluation's result."""
    if isinstance(value, str | bytes):
        size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8"))
        return 1, size
    if isinstance(value, dict):
        items, chars = 1, 0
        for key, entry in value.items():
            key_items, key_chars = measure(key)
            entry_items, entry_chars = measure(entry)
            items += key_items + entry_items
            chars += key_chars + entry_chars
        return items, chars
    if isinstance(value, list):
        items, chars = 1, 0
        for entry in value:
            entry_items, entry_chars = measure(entry)
            items += entry_items
            chars += entry_chars
        return items, chars
    return 1, 0
