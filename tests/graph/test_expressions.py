"""Condition expressions: the design brief's conditions, numbers, errors and safety bounds."""

from __future__ import annotations

import contextlib
import operator
import pickle
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cadenza.core.errors import ExpressionError
from cadenza.graph.expressions import Expression, compile_expression


def check(text: str, state: dict[str, Any]) -> bool:
    return compile_expression(text).test(state)


def refused(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    return info.value


def failed(text: str, state: dict[str, Any]) -> ExpressionError:
    expression = compile_expression(text)
    with pytest.raises(ExpressionError) as info:
        expression.evaluate(state)
    assert info.value.expression == text
    return info.value


# --- the brief's conditions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "state", "expected"),
    [
        ("amount > 10000", {"amount": 20000}, True),
        ("amount > 10000", {"amount": 500}, False),
        ("confidence < 0.8", {"confidence": 0.5}, True),
        ("confidence < 0.8", {"confidence": 0.9}, False),
        ("premium_customer", {"premium_customer": True}, True),
        ("premium_customer", {"premium_customer": False}, False),
        ('category == "billing"', {"category": "billing"}, True),
        ('category == "billing"', {"category": "shipping"}, False),
        ('tier in ["gold", "platinum"]', {"tier": "platinum"}, True),
        ('tier in ["gold", "platinum"]', {"tier": "silver"}, False),
        ("size(items) > 3", {"items": [1, 2, 3, 4]}, True),
        ("size(items) > 3", {"items": [1, 2, 3]}, False),
        ("order.total > 100", {"order": {"total": 150}}, True),
        ("order.total > 100", {"order": {"total": 50}}, False),
        ("!expedited_shipping", {"expedited_shipping": False}, True),
        ("!expedited_shipping", {"expedited_shipping": True}, False),
        ("a && b || c", {"a": True, "b": True, "c": False}, True),
        ("a && b || c", {"a": True, "b": False, "c": False}, False),
        ("a && b || c", {"a": False, "b": False, "c": True}, True),
    ],
)
def test_brief_conditions(text: str, state: dict[str, Any], expected: bool) -> None:
    assert check(text, state) is expected


def test_variables_are_the_top_level_state_keys_referenced() -> None:
    assert compile_expression("order.total > 100 && !vip").variables == {"order", "vip"}
    assert compile_expression('size(items) > 3 && tier in ["gold"]').variables == {"items", "tier"}
    # names bound by macros are not state keys
    assert compile_expression("items.all(x, x > limit)").variables == {"items", "limit"}
    assert compile_expression("true && 'amount' == name").variables == {"name"}


def test_only_referenced_fields_are_converted() -> None:
    # an unconvertible value under a key the expression does not use is never touched
    assert check("amount > 1", {"amount": 2, "handle": object(), "tags": {1, 2}})


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "state", "expected"),
    [
        ("amount > 10000", {"amount": 20000.5}, True),
        ("amount > 10000", {"amount": 9999.5}, False),
        ("confidence < 0.8", {"confidence": 1}, False),
        ("confidence < 0.8", {"confidence": 0}, True),
        ("amount * 1.1 > 100", {"amount": 100}, True),
        ("total + 1 > 5", {"total": 4.5}, True),
        ("a + b == 3.5", {"a": 1, "b": 2.5}, True),
        ("x == 1", {"x": 1.0}, True),
        ("order.total - discount > 10", {"order": {"total": 20}, "discount": 2.5}, True),
        ("items[0] == 'a'", {"items": ["a", "b"]}, True),
        ("7 / 2 == 3", {}, True),  # ints stay exact int64, CEL semantics
        ("x / 2 == 3.5", {"x": 7.0}, True),
        ("id == 9007199254740993", {"id": 9007199254740993}, True),
        ("id == 9007199254740992", {"id": 9007199254740993}, False),
    ],
)
def test_mixed_numbers(text: str, state: dict[str, Any], expected: bool) -> None:
    assert check(text, state) is expected


def test_numeric_results_keep_their_type() -> None:
    assert compile_expression("a + b").evaluate({"a": 2, "b": 3}) == 5
    assert isinstance(compile_expression("a + b").evaluate({"a": 2, "b": 3}), int)
    assert compile_expression("a * 1.5").evaluate({"a": 2}) == 3.0


# --- state conversion ------------------------------------------------------------------


class Tier(Enum):
    GOLD = "gold"
    SILVER = "silver"


class Priority(int, Enum):
    LOW = 1
    HIGH = 3


class Order(BaseModel):
    total: float
    tier: Tier
    lines: list[str]


@dataclass
class Customer:
    name: str
    vip: bool
    tags: tuple[str, ...]


def test_state_values_are_converted() -> None:
    assert check('tier == "gold"', {"tier": Tier.GOLD})
    assert check("priority > 2", {"priority": Priority.HIGH})
    assert check("tags == ['a', 'b']", {"tags": ("a", "b")})
    assert check("x == null", {"x": None})
    order = Order(total=150.0, tier=Tier.SILVER, lines=["a", "b"])
    assert check(
        'order.total > 100 && order.tier == "silver" && size(order.lines) == 2', {"order": order}
    )
    customer = Customer(name="Ada", vip=True, tags=("x",))
    assert check(
        'customer.vip && customer.name == "Ada" && "x" in customer.tags', {"customer": customer}
    )
    assert check("m.gold == 1", {"m": {Tier.GOLD: 1}})


def test_unconvertible_state_value_is_an_expression_error() -> None:
    error = failed("tags", {"tags": {1, 2}})
    assert "'tags'" in error.message and "set" in error.message


# --- run-time errors -------------------------------------------------------------------


def test_missing_field_names_it_and_lists_the_state() -> None:
    error = failed("amount > 10000", {"category": "billing", "inquiry": "refund"})
    assert error.message == "unknown field 'amount'; the state has: category, inquiry"
    assert "amount > 10000" in str(error)


def test_missing_nested_field_lists_the_parent_fields() -> None:
    error = failed("order.total > 100", {"order": {"id": 1, "lines": []}})
    assert error.message == "unknown field 'order.total'; 'order' has: id, lines"


def test_has_guards_a_missing_nested_field() -> None:
    assert not check("has(order.total) && order.total > 100", {"order": {}})


def test_test_requires_a_boolean() -> None:
    expression = compile_expression("amount + 1")
    assert expression.evaluate({"amount": 1}) == 2
    with pytest.raises(ExpressionError) as info:
        expression.test({"amount": 1})
    assert info.value.message == "condition evaluated to int, expected a boolean"
    with pytest.raises(ExpressionError, match="evaluated to string"):
        compile_expression("name").test({"name": "x"})


@pytest.mark.parametrize(
    ("text", "state", "fragment"),
    [
        ('"a" > 1', {}, "type error"),
        ("x > 1", {"x": "a"}, "type error"),
        ("x + 1 > 0", {"x": None}, "null + int"),
        ("1 / x > 0", {"x": 0}, "division by zero"),
        ("x + 1 > 0", {"x": 9223372036854775807}, "overflow"),
        ("items[3] == 1", {"items": [1]}, "index out of bounds"),
        ("size(x) > 1", {"x": 5}, "'size' does not accept"),
    ],
)
def test_run_time_errors_are_expression_errors(
    text: str, state: dict[str, Any], fragment: str
) -> None:
    assert fragment in failed(text, state).message


# --- compile-time errors and safety ---------------------------------------------------


def test_malformed_expression_reports_the_column() -> None:
    error = refused("amount >> 3")
    assert error.position == 9
    assert error.message.startswith("syntax error")
    assert "\n" not in str(error)
    assert refused("amount > ").position == 10
    assert refused("(a && b").position == 8
    assert refused("a &&\n&& b").position == 6  # offset in the whole text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__class__", "'__'"),
        ("().__class__", "'__'"),
        ("__import__('os')", "'__'"),
        ("x.__class__", "'__'"),
        ("x.__class__.__mro__", "'__'"),
        ("2 ** 10000", "syntax error"),
        ("(" * 100 + "1" + ")" * 100, "nesting deeper than 32"),
        ("[" * 40 + "1" + "]" * 40, "nesting deeper than 32"),
        ("x" * 5000, "the limit is 1000"),
        ("items.all(x, items.exists(y, y == x))", "cannot be nested"),
        ("a.map(x, b.filter(y, y > x))", "cannot be nested"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("x.all(k, v, v > 0)", "unsupported form"),
        ("", "empty"),
    ],
)
def test_refused_at_compile_time(text: str, fragment: str) -> None:
    assert fragment in refused(text).message


def test_refusal_positions() -> None:
    assert refused("x.__class__").position == 3
    assert refused("(" * 100 + "1" + ")" * 100).position == 33
    assert refused("items.all(x, items.exists(y, y == x))").position == 20


def test_the_bounds_themselves_are_allowed() -> None:
    assert compile_expression("(" * 32 + "1" + ")" * 32).evaluate({}) == 1
    assert compile_expression("1" + " + 1" * 249).evaluate({}) == 250  # 997 characters
    assert check('name == "__init__"', {"name": "__init__"})  # inside a string is data
    assert check("a.map(x, x * 2).exists(y, y > 3)", {"a": [1, 2]})  # chained, not nested


def test_worst_case_text_runs_in_a_small_thread_stack() -> None:
    results: list[object] = []

    def run() -> None:
        for text in ("1" + "+1" * 499, "!" * 995 + "true", "x" + ".y" * 499):
            try:
                results.append(compile_expression(text).evaluate({"x": {}}))
            except ExpressionError as exc:
                results.append(exc)

    previous = threading.stack_size(512 * 1024)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(previous)
    assert len(results) == 3


# --- the Expression value ---------------------------------------------------------------


def test_expression_is_immutable_and_compared_by_source() -> None:
    first, second = compile_expression("a > 1"), compile_expression("a > 1")
    assert first == second and hash(first) == hash(second)
    assert first != compile_expression("a > 2")
    with pytest.raises(AttributeError):
        first.source = "b"  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(first))
    assert isinstance(copy, Expression) and copy == first and copy.test({"a": 2})


# --- properties -------------------------------------------------------------------------

OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
INT64 = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)


@given(a=INT64, b=INT64, op=st.sampled_from(sorted(OPERATORS)))
def test_integer_comparisons_agree_with_python(a: int, b: int, op: str) -> None:
    expected = OPERATORS[op](a, b)
    assert compile_expression(f"a {op} b").test({"a": a, "b": b}) is expected
    assert compile_expression(f"{a} {op} {b}").test({}) is expected
    assert compile_expression(f"a {op} {b}").test({"a": a}) is expected


CEL_ALPHABET = "abxy_0123456789 .,()[]{}!<>=&|+-*/%?:'\"\\rnu\n"


@settings(max_examples=300)
@given(text=st.text(max_size=60) | st.text(alphabet=CEL_ALPHABET, max_size=60))
def test_arbitrary_text_compiles_or_raises_expression_error(text: str) -> None:
    try:
        expression = compile_expression(text)
    except ExpressionError as exc:
        assert exc.position is None or exc.position >= 1
        return
    with contextlib.suppress(ExpressionError):  # evaluating may fail, but only like this
        expression.evaluate({"a": 1, "b": 2.5, "x": "s", "y": [1, 2]})
