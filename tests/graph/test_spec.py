"""The YAML/JSON front end: what documents mean, and where each problem is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from cadenza import (
    Engine,
    ExecutionContext,
    HandlerRegistry,
    MemoryStore,
    SpecError,
    WorkflowStatus,
)
from cadenza.graph.spec_compile import load_workflow_file


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    @reg.handler
    def start(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["start"]}

    @reg.handler
    def big(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["big"]}

    @reg.handler
    def small(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["small"]}

    @reg.handler
    def finish(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["finish"]}

    @reg.handler("fan", branch=True)
    def left(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["left"]}

    @reg.handler("fan", branch=True)
    def right(state: dict[str, Any]) -> dict[str, Any]:
        return {"log": ["right"]}

    @reg.handler
    def double(state: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
        return {"log": [f"x{ctx.item * 2}"]}

    @reg.handler
    def bump(state: dict[str, Any]) -> dict[str, Any]:
        return {"n": state.get("n", 0) + 1}

    @reg.handler
    def total(state: dict[str, Any]) -> float:
        return sum(state["prices"])

    return reg


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


HEADER = """
name: demo
state:
  log: {type: list, reducer: append}
  n: int
  amount: float
  premium: bool
  items: list
  prices: list
  price_total: float
steps:
"""


async def run(path: Path, data: dict[str, Any]) -> Any:
    wf = load_workflow_file(path, registry=registry())
    async with Engine(MemoryStore()) as engine:
        return await engine.run(wf, data)


async def test_a_plain_list_runs_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - {name: start}\n  - {name: big}\n  - {name: finish}\n")
    result = await run(path, {})
    assert result.state["log"] == ["start", "big", "finish"]


async def test_the_brief_form_a_bare_list_with_lowercase_types(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[{"type": "sequential", "name": "start"}, {"name": "finish"}]', "w.json"
    )
    result = await run(path, {})
    assert result.ok and result.state["log"] == ["finish"], "an open dict state: last write wins"


@pytest.mark.parametrize(
    ("amount", "premium", "expected"),
    [
        (20000, False, ["start", "big", "finish"]),
        (5, True, ["start", "big", "finish"]),
        (5, False, ["start", "finish"]),
    ],
)
async def test_a_conditional_with_only_conditions_guards_its_handler(
    tmp_path: Path, amount: int, premium: bool, expected: list[str]
) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {name: start}
  - {type: CONDITIONAL, name: big, conditions: ["amount > 10000", premium]}
  - {name: finish}
""",
    )
    result = await run(path, {"amount": amount, "premium": premium})
    assert result.state["log"] == expected


async def test_match_all(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {type: CONDITIONAL, name: big, conditions: ["amount > 10000", premium], match: all}
  - {name: finish}
""",
    )
    assert (await run(path, {"amount": 20000, "premium": False})).state["log"] == ["finish"]


async def test_then_else_routes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {type: CONDITIONAL, name: decide, conditions: "amount > 10000", then: big, else: small}
  - {name: big, next: finish}
  - {name: small}
  - {name: finish}
""",
    )
    assert (await run(path, {"amount": 20000})).state["log"] == ["big", "finish"]
    assert (await run(path, {"amount": 1})).state["log"] == ["small", "finish"]


async def test_parallel_from_registered_branches_and_explicit_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {type: PARALLEL, name: fan, max_concurrent: 2}
  - {type: parallel, name: both, branches: [big, [small, finish]]}
""",
    )
    assert (await run(path, {})).state["log"] == ["left", "right", "big", "small", "finish"]


async def test_for_each_loop_wait_and_output_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {type: PARALLEL, name: each, for_each: items, branches: [double]}
  - {type: LOOP, name: again, body: [{name: bump}], until: "n >= 3", max_iterations: 5}
  - {type: WAIT, name: pause, seconds: 0.01}
  - {name: total, output: price_total}
""",
    )
    result = await run(path, {"items": [1, 2], "n": 0, "prices": [1.5, 2.5]})
    assert result.state["log"] == ["x2", "x4"]
    assert result.state["n"] == 3 and result.state["price_total"] == 4.0


async def test_rollback_step_and_retry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {name: start, retry: 2, compensate: small}
  - {type: ROLLBACK, name: undo, reason: "not today"}
""",
    )
    result = await run(path, {})
    assert result.status is WorkflowStatus.FAILED
    assert "rolled back by step 'undo': not today" in (result.error or "")
    assert result.state["log"] == ["start", "small"]


def test_a_react_without_a_model_is_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + """
  - {name: start}
  - {type: REACT, name: agent, max_iterations: 5}
""",
    )
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    assert str(info.value) == (f"{path}:13:5: $.steps[1]: a REACT needs a 'model'")


# -- malformed documents: (document, line, column, message) ------------------------------------

# fmt: off
BAD: list[tuple[str, str | None, int, int, str]] = [
    ("unknown type", "  - {type: PARALEL, name: fan}\n", 11, 6,
     "unknown step type 'PARALEL' — did you mean 'PARALLEL'?"),
    ("unknown field", "  - {name: start, timout: 3}\n", 11, 19,
     "unknown field 'timout' — did you mean 'timeout'?"),
    ("field for another type", "  - {name: start, endpoint: 'http://x'}\n", 11, 19,
     "'endpoint' applies to WEBHOOK steps, not SEQUENTIAL"),
    ("wrong type of timeout", "  - {name: start, timeout: soon}\n", 11, 19,
     "Input should be a valid number"),
    ("negative timeout", "  - {name: start, timeout: -1}\n", 11, 19, "Input should be greater than 0"),
    ("missing name", "  - {type: SEQUENTIAL}\n", 11, 5, "missing required field 'name'"),
    ("bad name", "  - {name: 'two words'}\n", 11, 6, "a name is letters, digits"),
    ("duplicate name", "  - {name: start}\n  - {name: start}\n", 12, 6, "duplicate step name 'start'"),
    ("unknown next", "  - {name: start, next: finsh}\n  - {name: finish}\n", 11, 19,
     "unknown step 'finsh' — did you mean 'finish'?"),
    ("unknown then", "  - {type: CONDITIONAL, name: c, conditions: premium, then: bigg}\n"
     "  - {name: big}\n", 11, 55, "unknown step 'bigg' — did you mean 'big'?"),
    ("unknown handler", "  - {name: strat}\n", 11, 6, "no handler named 'strat' — did you mean 'start'?"),
    ("bad import path", "  - {name: x, handler: 'no_such_mod:fn'}\n", 11, 15,
     "cannot import 'no_such_mod'"),
    ("loop without bound", "  - {type: LOOP, name: l, body: [{name: bump}], until: 'n > 1'}\n", 11, 5,
     "a LOOP needs 'max_iterations'"),
    ("loop without body", "  - {type: LOOP, name: l, until: 'n > 1', max_iterations: 3}\n", 11, 5,
     "a LOOP needs 'body'"),
    ("webhook without endpoint", "  - {type: WEBHOOK, name: w}\n", 11, 5, "a WEBHOOK needs an 'endpoint'"),
    ("approval without approvers", "  - {type: HUMAN_APPROVAL, name: a}\n", 11, 5, "needs 'approvers'"),
    ("conditional without conditions", "  - {type: CONDITIONAL, name: c}\n", 11, 5,
     "a CONDITIONAL needs 'conditions'"),
    ("then without conditions", "  - {type: CONDITIONAL, name: c, then: big}\n  - {name: big}\n", 11, 5,
     "'then' needs 'conditions'"),
    ("bad expression", "  - {type: CONDITIONAL, name: big, conditions: ['amount >']}\n", 11, 5,
     "column"),
    ("unsafe expression", "  - {type: CONDITIONAL, name: big, conditions: ['__import__']}\n", 11, 5,
     "__"),
    ("condition on unknown field", "  - {type: CONDITIONAL, name: big, conditions: ['amout > 1']}\n",
     11, 5, "did you mean 'amount'?"),
    ("cycle", "  - {name: start, next: big}\n  - {name: big, next: start}\n", 11, 5,
     "cycle without a loop guard"),
    ("unreachable", "  - {name: start, next: []}\n  - {name: big}\n", 12, 5, "unreachable"),
    ("bad retry", "  - {name: start, retry: {max_attempts: 0}}\n", 11, 27,
     "greater than or equal to 1"),
    ("bad reducer", "", 3, 21, "unknown reducer 'concat'"),
    ("bad config", "  - {name: start}\n", 0, 3, "unknown setting 'max_paralel_steps'"),
    ("parallel without branches", "  - {type: PARALLEL, name: nobody}\n", 11, 22,
     "no handler named 'nobody'"),
    ("for_each with two branches",
     "  - {type: PARALLEL, name: p, for_each: items, branches: [big, small]}\n", 11, 5,
     "give one branch"),
    ("wrong match", "  - {type: CONDITIONAL, name: big, conditions: premium, match: some}\n", 11, 57,
     "Input should be 'any' or 'all'"),
    ("fallback without breaker", "  - {name: start, fallback: small}\n", 11, 5,
     "'fallback' is used only"),
    ("steps not a list", None, 2, 1, "Input should be a valid list"),
    ("empty steps", None, 2, 1, "at least 1 item"),
]
# fmt: on


def _document(case: str, body: str | None) -> str:
    if case == "steps not a list":
        return "name: demo\nsteps: start\n"
    if case == "empty steps":
        return "name: demo\nsteps: []\n"
    head = HEADER
    if case == "bad reducer":
        head = head.replace("reducer: append", "reducer: concat")
        body = "  - {name: start}\n"
    if case == "bad config":
        head = head.replace("steps:\n", "config:\n  max_paralel_steps: 2\nsteps:\n")
        head = head.replace("state:", "state:", 1)
    assert body is not None
    return head + body


@pytest.mark.parametrize(
    ("case", "body", "line", "column", "message"), BAD, ids=[b[0] for b in BAD]
)
def test_malformed_documents_are_located(
    tmp_path: Path, case: str, body: str | None, line: int, column: int, message: str
) -> None:
    text = _document(case, body)
    if case == "bad config":
        # config sits between state and steps: find its line
        line = text.lstrip().splitlines().index("  max_paralel_steps: 2") + 1
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    lines = info.value.lines()
    assert any(message in entry for entry in lines), lines
    first = next(entry for entry in lines if message in entry)
    assert first.startswith(f"{path}:{line}:{column}: "), lines


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("name: demo\nsteps:\n  - {name: start\n", ":4:1: ", "invalid YAML"),
        ("name: demo\nname: again\nsteps: []\n", ":2:1: $.name: ", "duplicate key 'name'"),
        ("- 1\n- [\n", ":3:1: ", "invalid YAML"),
        ("42\n", ":1:1: ", "a workflow is a mapping or a list of steps, got int"),
        ("", ":1:1: ", "got empty"),
    ],
)
def test_broken_yaml(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text) if text else tmp_path / "wf.yaml"
    if not text:
        path.write_text("")
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    assert where in str(info.value) and message in str(info.value), str(info.value)


def test_broken_json_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[{"name": "start",}]', "wf.json")
    with pytest.raises(SpecError, match=r"wf\.json:1:19: invalid JSON"):
        load_workflow_file(path, registry=registry())


def test_json_errors_carry_the_json_path(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[\n  {"name": "start"},\n  {"type": "PARALEL", "name": "x"}\n]', "wf.json"
    )
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    assert f"{path}:3:4: $.steps[1].type: unknown step type 'PARALEL'" in str(info.value)


def test_a_failed_load_registers_nothing(tmp_path: Path) -> None:
    reg = registry()
    before = sorted(reg.names())
    path = write(tmp_path, HEADER + "  - {name: start}\n  - {name: nope}\n")
    with pytest.raises(SpecError):
        load_workflow_file(path, registry=reg)
    assert sorted(reg.names()) == before


def test_published_json_schema_is_current() -> None:
    import json

    from cadenza.graph.spec_schema import workflow_schema

    published = Path(__file__).parents[2] / "schema" / "cadenza-workflow.schema.json"
    assert json.loads(published.read_text()) == workflow_schema(), (
        "regenerate with: cadenza schema > schema/cadenza-workflow.schema.json"
    )


async def test_the_yaml_customer_service_example_matches_the_python_one() -> None:
    root = Path(__file__).parents[2] / "examples"
    from cadenza.runtime.loader import load_target

    wf, _ = load_target(str(root / "customer_service.yaml"))
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {"inquiry": "I was charged twice for order 1234"})
    assert result.ok and result.state["category"] == "billing"
    assert "refunded in 3-5 business days" in result.state["reply"]
