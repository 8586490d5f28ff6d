"""Conditions are bounded in time and memory: hostile expressions are refused when they
compile, large data when they are evaluated, and every failure is an ExpressionError that
says why."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.graph.cel_corpus import HOSTILE, bound, expression, measure, state

from cadenza.core.errors import ExpressionError
from cadenza.graph._cel_parse import parse, reads
from cadenza.graph.expressions import compile_expression

EXAMPLES = int(os.environ.get("CADENZA_FUZZ_EXAMPLES", "5000"))


def refused(text: str) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    return info.value.message


def failed(text: str, data: dict[str, Any]) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text).evaluate(data)
    return info.value.message


def links(count: int, body: str = "a+a+a+a") -> str:
    return "['ab']" + f".map(a, {body})" * count


# --- refused when compiled ------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_expressions_are_refused_when_they_compile(text: str) -> None:
    message = refused(text)
    assert message.startswith("too costly: evaluation could ")
    assert "MiB" in message or " ms " in message


def test_growth_through_chained_macros_is_refused_past_the_budget() -> None:
    assert compile_expression(links(3)).evaluate({}) == ["ab" * 64]
    assert "intermediate values" in refused(links(13))
    assert "intermediate values" in refused(links(14))
    ten = "[" + ", ".join(["a"] * 10) + "]"
    fan = "[1]" + f".map(a, {ten})" * 6
    assert "too costly" in refused(f"{fan} == {fan}")


def test_a_quadratic_expression_is_refused_when_costly_even_on_small_data() -> None:
    message = refused("names.all(n, n.matches('^\\\\w+$'))")  # \\w compiles on each use
    assert message.endswith("even when the fields it reads hold only 10 entries")
    assert compile_expression("names.all(n, n.matches('^[A-Za-z0-9_]+$'))").test(
        {"names": ["ada", "bob"]}
    )


def test_patterns_must_be_literals_the_cost_can_be_bounded_for() -> None:
    assert "string literal" in refused("s.matches(pattern)")
    assert "cannot bound the cost of the pattern" in refused("s.matches('\\\\pL+')")
    assert "too costly" in refused("s.matches('.{10000}')")
    assert compile_expression("s.matches('^a+b$')").test({"s": "aaab"})
    assert compile_expression("s.matches('(?i)HELLO')").test({"s": "hello"})


# --- refused when evaluated on data too large ----------------------------------------------


def test_data_too_large_for_an_expression_is_refused_when_evaluated() -> None:
    text = "xs.map(x, x * 2).size() > 0"
    assert compile_expression(text).test({"xs": list(range(100))})
    message = failed(text, {"xs": list(range(5_000))})
    assert message.startswith("too costly on this state: evaluation could take")


def test_reading_large_input_is_not_refused_when_the_work_is_small() -> None:
    xs = list(range(200_000))
    assert compile_expression("size(xs) > 3").test({"xs": xs})
    assert compile_expression("xs[0] == 0 && xs[199999] > 5").test({"xs": xs})


@pytest.mark.parametrize("depth", [65, 500, 5_000])
def test_deeply_nested_data_is_an_expression_error(depth: int) -> None:
    deep: Any = 1
    for _ in range(depth):
        deep = [deep]
    assert failed("v == 1", {"v": deep}) == "field 'v' is nested deeper than 64 levels"
    nested: Any = {}
    for _ in range(depth):
        nested = {"x": nested}
    assert "nested deeper than 64 levels" in failed("size(v) > 0", {"v": nested})


def test_only_the_fields_read_are_converted() -> None:
    deep: Any = []
    for _ in range(500):
        deep = [deep]
    order = {"total": 150, "handle": object(), "history": deep, "lines": [{"q": 1}]}
    assert compile_expression("order.total > 100").test({"order": order})
    assert compile_expression("has(order.lines) && order.lines[0].q == 1").test({"order": order})
    assert not compile_expression("has(order.missing)").test({"order": order})
    message = failed("order.missing > 1", {"order": order})
    assert message == "unknown field 'order.missing'; 'order' has: handle, history, lines, total"
    assert "holds a object" in failed("size(order) > 1", {"order": order})


def test_what_an_expression_reads() -> None:
    assert reads(parse("order.total > 1 && order.tier.name == 'x' && !vip")) == {
        "order": {"total": None, "tier": {"name": None}},
        "vip": None,
    }
    assert reads(parse("a.b + size(a)")) == {"a": None}
    assert reads(parse("xs.all(x, x.y > lim)")) == {"xs": None, "lim": None}
    assert reads(parse("x.all(x, x)")) == {"x": None}  # the macro's x is not the field


# --- off the event loop ---------------------------------------------------------------------


async def test_atest_evaluates_large_data_in_a_worker_thread() -> None:
    expression = compile_expression("size(xs) > 3")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    assert await expression.atest({"xs": list(range(5))})  # cheap: evaluated right here
    small = ticks
    assert await expression.atest({"xs": list(range(300_000))})  # large: the loop went on
    assert ticks > small
    task.cancel()


# --- generated corpus ----------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_generated_expressions_fail_only_with_reasons_and_stay_within_their_bound(
    seed: int,
) -> None:
    rng = random.Random(seed)
    text, data = expression(rng), state(rng)
    try:
        compiled = compile_expression(text)
    except ExpressionError as exc:
        assert exc.message and "\n" not in exc.message
        return
    try:
        value = compiled.evaluate(data)
    except ExpressionError as exc:
        assert exc.message and "\n" not in exc.message
        return
    items, chars = measure(value)
    limit = bound(compiled, data)
    assert items <= limit.items and chars <= limit.chars, (text, items, chars, limit)
