"""Every case runs on LangGraph and on the facade; what they show must be the same."""

from __future__ import annotations

import pytest

from tests.langgraph import (
    cases_cache,
    cases_config,
    cases_core,
    cases_debug,
    cases_durable,
    cases_history,
    cases_messages,
    cases_routing,
    cases_subgraph,
)
from tests.langgraph.harness import Case, compare, variants

CASES: list[Case] = [
    *cases_core.CASES,
    *cases_routing.CASES,
    *cases_config.CASES,
    *cases_durable.CASES,
    *cases_subgraph.CASES,
    *cases_history.CASES,
    *cases_messages.CASES,
    *cases_debug.CASES,
    *cases_cache.CASES,
]


def _params() -> list[object]:
    return [pytest.param(case, v, id=f"{case.name}-{v}") for case in CASES for v in variants(case)]


def test_enough_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "variant"), _params())
def test_same_as_langgraph(case: Case, variant: str) -> None:
    reference, facade = compare(case, variant)
    assert facade == reference
