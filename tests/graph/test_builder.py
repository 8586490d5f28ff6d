from __future__ import annotations

import operator
from typing import Annotated, TypedDict

import pytest

from cadenza import DefinitionError, Workflow, WorkflowConfiguration


class S(TypedDict, total=False):
    amount: int
    items: list[int]
    out: Annotated[list[int], operator.add]


def a(state: S) -> None:
    return None


def b(state: S) -> None:
    return None


def c(state: S) -> None:
    return None


def compile_error(wf: Workflow) -> str:
    with pytest.raises(DefinitionError) as info:
        wf.compile()
    return str(info.value)


def test_duplicate_step_names_are_refused_at_once() -> None:
    wf = Workflow("dup", state=S)
    wf.task(a)
    with pytest.raises(DefinitionError, match="duplicate step name 'a'"):
        wf.task(a)


def test_unknown_edge_target_suggests_the_near_miss() -> None:
    wf = Workflow("unknown", state=S)
    wf.task(a, name="validate")
    wf.task(b, name="charge")
    wf.edge("validate", "chrage")
    assert "names unknown step 'chrage' — did you mean 'charge'?" in compile_error(wf)


def test_unknown_route_target() -> None:
    wf = Workflow("route", state=S)
    wf.task(a)
    wf.conditional("pick", {"nowhere": "amount > 1"})
    wf.chain(a, "pick")
    assert "steps.pick: routes to unknown step 'nowhere'" in compile_error(wf)


def test_unreachable_step_is_named() -> None:
    wf = Workflow("unreachable", state=S)
    wf.task(a)
    wf.task(b)
    wf.task(c)
    wf.chain(a, b)
    message = compile_error(wf)
    assert "step 'c' is unreachable from the start (a)" in message


def test_cycle_without_loop_guard_shows_the_cycle() -> None:
    wf = Workflow("cycle", state=S)
    wf.task(a)
    wf.task(b)
    wf.task(c)
    wf.chain(a, b, c, b)
    message = compile_error(wf)
    assert "cycle without a loop guard: b → c → b" in message
    assert "max_iterations" in message


def test_writes_outside_the_schema_are_refused() -> None:
    wf = Workflow("writes", state=S)
    wf.task(a, writes=["amount", "amuont"])
    assert (
        "writes key 'amuont' that the state schema S lacks — did you mean 'amount'?"
        in compile_error(wf)
    )


class Wrong(TypedDict):
    total: int


def test_typed_return_annotation_declares_writes() -> None:
    def step(state: S) -> Wrong:
        return {"total": 1}

    wf = Workflow("typed", state=S)
    wf.task(step)
    assert "writes key 'total'" in compile_error(wf)


def test_condition_referring_to_missing_field() -> None:
    wf = Workflow("cond", state=S)
    wf.task(a)
    wf.conditional("pick", {a: "amout > 5"})
    wf.start("pick")
    assert (
        "refers to key 'amout' that the state schema S lacks — did you mean 'amount'?"
        in compile_error(wf)
    )


def test_malformed_expression_fails_with_its_column() -> None:
    wf = Workflow("bad_expr", state=S)
    wf.task(a)
    with pytest.raises(DefinitionError) as info:
        wf.conditional("pick", {a: "amount >"})
    assert info.value.path == "steps.pick.routes[0]"
    assert "column" in str(info.value)


def test_loop_needs_a_positive_max_iterations() -> None:
    wf = Workflow("loop", state=S)
    with pytest.raises(DefinitionError, match="max_iterations must be a positive integer"):
        wf.loop("l", body=a, until="amount > 1", max_iterations=0)


def test_map_items_key_must_exist() -> None:
    wf = Workflow("map", state=S)
    wf.map("fan", items="itmes", branch=a)
    assert "items refers to state key 'itmes'" in compile_error(wf)


def test_conditional_with_plain_edge_is_refused() -> None:
    wf = Workflow("plain", state=S)
    wf.task(a)
    wf.task(b)
    wf.conditional("pick", {a: "amount > 1"})
    wf.edge("pick", b)
    wf.start("pick")
    assert "make 'b' one of its routes or its default" in compile_error(wf)


def test_handler_must_take_the_state() -> None:
    wf = Workflow("noargs", state=S)
    with pytest.raises(DefinitionError, match="must accept the state"):
        wf.task(lambda: None, name="bad")


def test_version_hash_is_stable_and_changes_with_the_definition() -> None:
    def build(timeout: int) -> Workflow:
        wf = Workflow("v", state=S, config=WorkflowConfiguration(timeout=timeout))
        wf.task(a)
        wf.task(b)
        return wf

    assert build(10).compile().version == build(10).compile().version
    assert build(10).compile().version != build(20).compile().version


def test_steps_without_edges_run_in_declaration_order() -> None:
    wf = Workflow("seq", state=S)
    wf.task(a)
    wf.task(b)
    wf.task(c)
    graph = wf.compile().graph
    assert graph.edges == (("a", "b"), ("b", "c"))
    assert graph.entry == ("a",)


def test_state_schema_must_be_typeddict_or_dict() -> None:
    wf = Workflow("bad_state", state=int)
    wf.task(a)
    assert "state schema must be a TypedDict or dict" in compile_error(wf)
