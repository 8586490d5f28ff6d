"""What a regular expression costs the CEL engine, estimated from the pattern's structure.

The engine (cel-rust, through ``common-expression-language``) compiles the pattern of
``matches`` with Rust's ``regex`` crate on *every* evaluation, and compiling is where the
cost is: a Unicode class such as ``\\w`` compiles to a large automaton (about 0.2 ms each,
so ``\\w{50}`` takes 10 ms), and matching slows with the automaton's size when the lazy DFA
gives up. The weight computed here is an estimate of that compile time in microseconds,
measured per construct on the engine (``bench/expressions.py`` re-measures it); matching is
charged per character of text in proportion to it.

The pattern is read with Python's own regular-expression parser, which shares the common
syntax with Rust's. A pattern it cannot read (Rust-only syntax such as ``\\pL``) cannot be
bounded and is refused.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from typing import Any

__all__ = ["RegexCost", "regex_cost"]

# Compile time in µs of one occurrence, measured on the engine (rounded up).
_LITERAL = 0.1
_FOLDED = 1.5  # a literal or ASCII class under (?i)
_ANY = 4.0  # ".", a negated class or literal: all of Unicode but a few code points
_ASCII_CLASS = 0.3
_CATEGORY = {
    sre_constants.CATEGORY_WORD: 250.0,
    sre_constants.CATEGORY_NOT_WORD: 250.0,
    sre_constants.CATEGORY_DIGIT: 20.0,
    sre_constants.CATEGORY_NOT_DIGIT: 40.0,
    sre_constants.CATEGORY_SPACE: 3.0,
    sre_constants.CATEGORY_NOT_SPACE: 6.0,
}
_MAX_WEIGHT = 1e12
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)


class RegexCost:
    """``compile_ns``: to compile the pattern once; ``char_ns``: to match one character."""

    __slots__ = ("char_ns", "compile_ns", "weight")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.compile_ns = 2_000.0 + 1_500.0 * weight
        self.char_ns = 2.0 + 0.5 * weight


def regex_cost(pattern: str) -> RegexCost:
    """The cost of ``pattern``; raises ValueError if it cannot be read."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(str(exc)) from None
    folded = bool(parsed.state.flags & re.IGNORECASE)
    return RegexCost(min(_weight(list(parsed), folded), _MAX_WEIGHT))


def _weight(items: list[tuple[Any, Any]], folded: bool) -> float:
    total = 0.0
    for op, arg in items:
        if op is sre_constants.LITERAL:
            total += _FOLDED if folded else _LITERAL
        elif op in (sre_constants.NOT_LITERAL, sre_constants.ANY):
            total += _ANY
        elif op is sre_constants.IN:
            total += _class_weight(arg, folded)
        elif op in _REPEATS:
            low, high, sub = arg
            copies = low + 1 if high is sre_constants.MAXREPEAT else max(high, 1)
            total += copies * _weight(list(sub), folded)
        elif op is sre_constants.SUBPATTERN:
            add, remove = arg[1], arg[2]
            inner = (folded or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE
            total += _weight(list(arg[3]), inner)
        elif op is sre_constants.BRANCH:
            total += sum(_weight(list(branch), folded) for branch in arg[1])
        elif op is sre_constants.ATOMIC_GROUP:
            total += _weight(list(arg), folded)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            total += _weight(list(arg[1]), folded)
        else:  # anchors, word boundaries, back-references (the engine refuses those)
            total += _LITERAL
        if total >= _MAX_WEIGHT:
            return _MAX_WEIGHT
    return total


def _class_weight(members: list[tuple[Any, Any]], folded: bool) -> float:
    weight = _FOLDED if folded else _ASCII_CLASS
    for op, arg in members:
        if op is sre_constants.NEGATE:
            weight = max(weight, _ANY)
        elif op is sre_constants.CATEGORY:
            weight += _CATEGORY.get(arg, _ANY)
        elif op is sre_constants.RANGE and arg[1] > 0x7F:
            weight = max(weight, _ANY)
    return weight
