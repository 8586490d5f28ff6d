from __future__ import annotations

import importlib.util
import operator
import re
import shutil
import sys
from pathlib import Path
from typing import Annotated, TypedDict

import pytest

from cadenza import Workflow
from cadenza.graph import render as render_module
from cadenza.graph.handlers import make_handler
from cadenza.graph.ir import Graph, Step, StepKind, WorkflowIR
from cadenza.graph.render import RenderError, render, to_dot, to_mermaid

ROOT = Path(__file__).parents[2]
HAS_DOT = shutil.which("dot") is not None


class S(TypedDict, total=False):
    amount: int
    count: int
    category: str
    items: list[int]
    out: Annotated[list[int], operator.add]


def charge(state: S) -> None: ...
def refund(state: S) -> None: ...
def b1(state: S) -> None: ...
def b2(state: S) -> None: ...
def c(state: S) -> None: ...
def per_item(state: S) -> None: ...
def count_up(state: S) -> None: ...
def big(state: S) -> None: ...
def small(state: S) -> None: ...
def normal(state: S) -> None: ...


def is_small(state: S) -> bool:
    return state.get("amount", 0) < 10


def pick(state: S) -> str:
    return "big"


def rich() -> Workflow:
    """Every builder verb: tasks with policies, parallel (with a list branch), map, loop,
    wait, a conditional with expressions, a predicate and a default, and a rollback."""
    wf = Workflow("rich", state=S)
    wf.task(charge, timeout=5, retries=2, compensate=refund, breaker="payments")
    wf.parallel("fan", [[b1, b2], c], max_concurrent=2)
    wf.map("each", items="items", branch=per_item, on_failure="collect")
    wf.loop("again", body=[count_up], until="count >= 3", max_iterations=5)
    wf.wait("pause", seconds=1.5)
    wf.conditional(
        "route", {big: "amount > 100", small: is_small, "undo": "amount == 0"}, default=normal
    )
    wf.rollback("undo", reason="nothing to charge")
    wf.chain(charge, "fan", "each", "again", "pause", "route")
    return wf


# -- syntax checkers ------------------------------------------------------------------------

MERMAID_ID = r"[A-Za-z0-9_]+"
PAIRS = {"((": "))", "([": "])", "[[": "]]", "[/": "/]", "{{": "}}", "[": "]", "{": "}", "(": ")"}
PAIRS[">"] = "]"
_OPEN = "|".join(re.escape(o) for o in sorted(PAIRS, key=len, reverse=True))
_CLOSE = "|".join(re.escape(c) for c in sorted(set(PAIRS.values()), key=len, reverse=True))
NODE = re.compile(rf'^({MERMAID_ID})({_OPEN})"([^"]*)"({_CLOSE})$')
SUBGRAPH = re.compile(rf'^subgraph ({MERMAID_ID}) \["([^"]*)"\]$')
EDGE = re.compile(rf'^({MERMAID_ID}) -->(?:\|"([^"]*)"\|)? ({MERMAID_ID})$')
MERMAID_KEYWORDS = {"end", "subgraph", "graph", "flowchart", "style", "class", "classdef"}


def check_label(label: str) -> None:
    """A label's text may hold no character that ends a string or a shape in Mermaid."""
    assert not set(label.replace("<br/>", "")) & set('"<>|[]{}`'), label


def check_mermaid(text: str) -> tuple[dict[str, str], dict[str, str], list[tuple[str, ...]]]:
    """Parse our Mermaid subset strictly; returns nodes (id -> label), subgraphs (id ->
    title) and edges (src, label, dst). Anything else, or an unbalanced block, fails."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes: dict[str, str] = {}
    subgraphs: dict[str, str] = {}
    edges: list[tuple[str, ...]] = []
    depth = 0
    for line in lines[1:]:
        s = line.strip()
        if s.startswith("%%"):
            continue
        if s == "end":
            depth -= 1
            assert depth >= 0, "an 'end' without its subgraph"
        elif m := SUBGRAPH.match(s):
            depth += 1
            assert m[1] not in nodes and m[1] not in subgraphs
            check_label(m[2])
            subgraphs[m[1]] = m[2]
        elif m := NODE.match(s):
            assert PAIRS[m[2]] == m[4], f"mismatched brackets in {s!r}"
            assert m[1] not in nodes and m[1] not in subgraphs, f"duplicate id {m[1]}"
            check_label(m[3])
            nodes[m[1]] = m[3]
        elif m := EDGE.match(s):
            check_label(m[2] or "")
            edges.append((m[1], m[2] or "", m[3]))
        else:
            pytest.fail(f"not valid here: {line!r}")
    assert depth == 0, "a subgraph is never closed"
    declared = nodes.keys() | subgraphs.keys()
    assert not {i.lower() for i in declared} & MERMAID_KEYWORDS
    for src, _, dst in edges:
        assert src in declared and dst in declared, (src, dst)
    return nodes, subgraphs, edges


DOT_STR = r'"(?:[^"\\]|\\.)*"'
DOT_NODE = re.compile(rf"^({DOT_STR}) \[(.*)\];$")
DOT_EDGE = re.compile(rf"^({DOT_STR}) -> ({DOT_STR})(?: \[(.*)\])?;$")
DOT_CLUSTER = re.compile(rf"^subgraph ({DOT_STR}) \{{$")


def check_dot(text: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    """Our DOT subset, strictly: balanced braces, every edge between declared nodes, and
    every lhead/ltail naming a declared cluster that holds the edge's end."""
    lines = [line.strip() for line in text.splitlines()]
    assert re.match(rf"^digraph {DOT_STR} \{{$", lines[0]) and lines[-1] == "}"
    nodes: set[str] = set()
    members: dict[str, set[str]] = {}
    stack: list[str] = []
    edges: list[tuple[str, str, str]] = []
    for s in lines[1:-1]:
        if m := DOT_CLUSTER.match(s):
            stack.append(m[1].strip('"'))
            members[stack[-1]] = set()
        elif s == "}":
            assert stack, "unbalanced braces"
            stack.pop()
        elif m := DOT_NODE.match(s):
            node = m[1].strip('"')
            assert node not in nodes
            nodes.add(node)
            for cluster in stack:
                members[cluster].add(node)
        elif m := DOT_EDGE.match(s):
            edges.append((m[1].strip('"'), m[2].strip('"'), m[3] or ""))
        else:
            assert s.startswith(("//", "graph [", "node [", "edge [", "label=")), s
    assert not stack, "unbalanced braces"
    for src, dst, attrs in edges:
        assert src in nodes and dst in nodes, (src, dst)
        for end, node in (("ltail", src), ("lhead", dst)):
            if m := re.search(rf'{end}="([^"]+)"', attrs):
                assert node in members[m[1]], (end, m[1], node)
    return nodes, edges


# -- mermaid ---------------------------------------------------------------------------------


def test_mermaid_shows_every_kind_with_its_shape_and_labels() -> None:
    text = to_mermaid(rich().compile())
    nodes, subgraphs, edges = check_mermaid(text)
    assert '__start__(("start"))' in text and '__end__(("end"))' in text
    assert 'charge["charge<br/>timeout 5s, retries 2, breaker payments, compensate refund"]' in text
    assert 'pause(["pause<br/>wait 1.5s"])' in text
    assert 'route{"route<br/>conditional"}' in text
    assert 'undo{{"undo<br/>rollback<br/>reason=nothing to charge"}}' in text
    assert subgraphs == {
        "fan": "parallel fan (2 at a time)",
        "fan__0": "branch 0",
        "fan__1": "branch 1",
        "each": "map each (over: items, collect errors)",
        "again": "loop again (until: count #gt;= 3, max 5)",
    }
    assert {"fan__0__b1", "fan__0__b2", "fan__1__c", "each__per_item", "again__count_up"} <= set(
        nodes
    )
    assert ("fan__0__b1", "", "fan__0__b2") in edges  # a list branch runs in order
    assert ("__start__", "", "charge") in edges
    assert [e for e in edges if e[0] == "route"] == [
        ("route", "amount #gt; 100", "big"),
        ("route", "is_small", "small"),
        ("route", "amount == 0", "undo"),
        ("route", "default", "normal"),
    ]
    plain = [("charge", "", "fan"), ("fan", "", "each"), ("each", "", "again")]
    assert all(e in edges for e in plain)
    assert {e[0] for e in edges if e[2] == "__end__"} == {"big", "small", "undo", "normal"}


def test_subgraph_block_is_closed_after_its_nested_blocks() -> None:
    text = to_mermaid(rich().compile())
    lines = [line.strip() for line in text.splitlines()]
    fan = lines.index('subgraph fan ["parallel fan (2 at a time)"]')
    assert lines[fan + 1] == 'subgraph fan__0 ["branch 0"]'
    assert lines[fan + 2 : fan + 5] == [
        'fan__0__b1["b1"]',
        'fan__0__b2["b2"]',
        "fan__0__b1 --> fan__0__b2",
    ]


def test_nested_blocks_in_a_loop_body() -> None:
    inner = Workflow("inner", state=S)
    inner.task(count_up)
    inner.parallel("deep", [b1, [b2, c]])
    wf = Workflow("nested", state=S)
    wf.task(charge)
    wf.loop("again", body=inner, until=is_small, max_iterations=3)
    ir = wf.compile()
    nodes, subgraphs, edges = check_mermaid(to_mermaid(ir))
    assert subgraphs["again"] == "loop again (until: is_small, max 3)"
    assert {"again__deep", "again__deep__0", "again__deep__1"} <= subgraphs.keys()
    assert {"again__deep__0__b1", "again__deep__1__b2", "again__deep__1__c"} <= nodes.keys()
    assert ("again__count_up", "", "again__deep") in edges
    _, dot_edges = check_dot(to_dot(ir))
    assert (
        "again__count_up",
        "again__deep__0__b1",
        'lhead="cluster_again__deep"',
    ) in dot_edges


def test_labels_with_quotes_brackets_and_pipes_are_escaped() -> None:
    odd = 'we"ird [x] {y} <z> |p| #q'
    wf = Workflow('name "quoted" <x>', state=S)
    wf.task(charge, name=odd)
    wf.conditional(
        "route",
        {big: 'category == "a|b" || amount > 1', small: "category in ['x]']"},
        default=normal,
    )
    wf.edge(odd, "route")
    ir = wf.compile()
    text = to_mermaid(ir)
    nodes, _, edges = check_mermaid(text)
    assert nodes["we_ird__x___y___z___p___q"] == (
        "we#quot;ird #91;x#93; #123;y#125; #lt;z#gt; #124;p#124; #35;q"
    )
    labels = {dst: label for src, label, dst in edges if src == "route"}
    assert labels["big"] == "category == #quot;a#124;b#quot; #124;#124; amount #gt; 1"
    assert labels["small"] == "category in #91;'x#93;'#93;"
    dot = to_dot(ir)
    check_dot(dot)
    assert '[label="we\\"ird [x] {y} <z> |p| #q", shape=box]' in dot
    assert 'label="category == \\"a|b\\" || amount > 1"' in dot


def test_ids_are_unique_safe_and_avoid_keywords() -> None:
    wf = Workflow("ids", state=S)
    wf.task(charge, name="end")
    wf.task(c, name="fan__0__b1")  # collides with the id of b1 inside fan
    wf.parallel("fan", [b1])
    wf.task(refund, name="a-b.c")
    wf.task(count_up, name="a_b_c")
    nodes, _, _ = check_mermaid(to_mermaid(wf.compile()))
    assert nodes["end_"] == "end"
    assert nodes["fan__0__b1"] == "fan__0__b1" and nodes["fan__0__b1_2"] == "b1"
    assert nodes["a_b_c"] == "a-b.c" and nodes["a_b_c_2"] == "a_b_c"


def test_router_guard_mode_and_other_kinds() -> None:
    wf = Workflow("other", state=S)
    wf.task(charge, name="first")
    guard = {"guard": ["amount > 1", "count < 2"], "match": "any"}
    handler = make_handler(c, path="steps.guarded")
    wf.add(Step(name="guarded", kind=StepKind.TASK, handler=handler, options=guard))
    wf.conditional("pick", [big, small], router=pick, mode="all")
    wf.chain("first", "guarded", "pick")
    ir = wf.compile()
    # Kinds whose executors are not there yet do not compile; build their IR by hand.
    steps = dict(ir.graph.steps)
    steps["ask"] = Step(name="ask", kind=StepKind.HUMAN_APPROVAL, options={"prompt": "ok?"})
    steps["hook"] = Step(name="hook", kind=StepKind.WEBHOOK)
    edges = (*ir.graph.edges, ("big", "ask"), ("ask", "hook"))
    graph = Graph.build(steps, edges, ir.graph.entry)
    ir = WorkflowIR.create("other", graph, ir.schema, ir.config)
    text = to_mermaid(ir)
    nodes, _, mermaid_edges = check_mermaid(text)
    assert nodes["guarded"] == "guarded<br/>guard: amount #gt; 1 or count #lt; 2"
    assert nodes["pick"] == "pick<br/>conditional, all matches, router: pick"
    assert ("pick", "pick", "big") in mermaid_edges and ("pick", "pick", "small") in mermaid_edges
    assert '\n    ask[/"ask<br/>human_approval<br/>prompt=ok?"/]\n' in text
    assert '\n    hook>"hook<br/>webhook"]\n' in text
    nodes_dot, _ = check_dot(to_dot(ir))
    assert {"ask", "hook", "guarded"} <= nodes_dot


def test_snapshot_of_a_small_workflow() -> None:
    wf = Workflow("small", state=S)
    wf.task(charge, timeout=2)
    wf.wait("pause", seconds=60)
    ir = wf.compile()
    assert to_mermaid(ir) == (
        "flowchart TD\n"
        f"    %% small (version {ir.version})\n"
        '    __start__(("start"))\n'
        '    charge["charge<br/>timeout 2s"]\n'
        '    pause(["pause<br/>wait 60s"])\n'
        '    __end__(("end"))\n'
        "    __start__ --> charge\n"
        "    charge --> pause\n"
        "    pause --> __end__\n"
    )
    assert to_dot(ir).endswith(
        '  "__start__" [label="start", shape=circle];\n'
        '  "charge" [label="charge\\ntimeout 2s", shape=box];\n'
        '  "pause" [label="pause\\nwait 60s", shape=box, style=rounded];\n'
        '  "__end__" [label="end", shape=doublecircle];\n'
        '  "__start__" -> "charge";\n'
        '  "charge" -> "pause";\n'
        '  "pause" -> "__end__";\n'
        "}\n"
    )


def test_output_is_deterministic() -> None:
    first, second = rich().compile(), rich().compile()
    assert to_mermaid(first) == to_mermaid(second) == to_mermaid(first)
    assert to_dot(first) == to_dot(second)


# -- dot ---------------------------------------------------------------------------------------


def test_dot_is_well_formed_with_clusters_and_labels() -> None:
    dot = to_dot(rich().compile())
    nodes, edges = check_dot(dot)
    assert {"__start__", "__end__", "charge", "fan__0__b1", "fan__1__c", "undo"} <= nodes
    assert 'subgraph "cluster_again" {' in dot
    assert 'label="loop again (until: count >= 3, max 5)";' in dot
    assert '"route" [label="route\\nconditional", shape=diamond];' in dot
    assert '"undo" [label="undo\\nrollback\\nreason=nothing to charge", shape=hexagon];' in dot
    assert ("route", "big", 'label="amount > 100"') in edges
    assert ("route", "normal", 'label="default"') in edges
    # edges to and from a composite step end at its cluster
    assert ("charge", "fan__0__b1", 'lhead="cluster_fan"') in edges
    assert ("fan__1__c", "each__per_item", 'ltail="cluster_fan", lhead="cluster_each"') in edges


# -- render ----------------------------------------------------------------------------------


def test_render_text_formats_and_output_file(tmp_path: Path) -> None:
    ir = rich().compile()
    assert render(ir, "mermaid") == to_mermaid(ir)
    out = tmp_path / "wf.dot"
    assert render(ir, "dot", out) == to_dot(ir)
    assert out.read_text() == to_dot(ir)


def test_unknown_format_lists_the_choices() -> None:
    with pytest.raises(RenderError, match="mermaid, dot, svg, png"):
        render(rich().compile(), "jpeg")


def test_missing_graphviz_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)
    with pytest.raises(RenderError) as info:
        render(rich().compile(), "svg")
    assert "apt-get install graphviz" in str(info.value)
    assert "--format mermaid/dot" in str(info.value)


def test_graphviz_failure_is_a_render_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Python interpreter stands in for a broken dot: it rejects "-Tpng" and exits 2.
    monkeypatch.setattr(render_module.shutil, "which", lambda name: sys.executable)
    with pytest.raises(RenderError, match="failed"):
        render(rich().compile(), "png")


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
def test_render_svg_and_png_with_graphviz(tmp_path: Path) -> None:
    ir = rich().compile()
    out = tmp_path / "wf.svg"
    svg = render(ir, "svg", out)
    assert isinstance(svg, bytes) and b"<svg" in svg and out.read_bytes() == svg
    assert b"loop again (until: count &gt;= 3, max 5)" in svg
    png = render(ir, "png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")


# -- the example -----------------------------------------------------------------------------


def load_example(name: str) -> Workflow:
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"render_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.workflow


def test_customer_service_example_renders_every_step() -> None:
    ir = load_example("customer_service").compile()
    nodes, subgraphs, edges = check_mermaid(to_mermaid(ir))
    dot_nodes, _ = check_dot(to_dot(ir))
    for name, step in ir.graph.steps.items():
        if step.branches:
            assert name in subgraphs
            for i, branch in enumerate(step.branches):
                for inner in branch.steps:
                    assert f"{name}__{i}__{inner}" in nodes
                    assert f"{name}__{i}__{inner}" in dot_nodes
        else:
            assert name in nodes and name in dot_nodes
    assert ("route_to_specialist", "category == 'billing'", "billing_specialist") in edges
    assert ("route_to_specialist", "default", "general_specialist") in edges
    assert ("quality_check", "", "human_quality_review") in edges
    assert ("human_quality_review", "", "__end__") in edges
