"""Workflow diagrams: a compiled :class:`WorkflowIR` as Mermaid or Graphviz DOT text, or as an
SVG/PNG drawn by the Graphviz ``dot`` binary.

Both text formats come from one format-neutral layout (nodes, nested blocks, edges), so they
show the same thing. The output depends only on the IR, in declaration order, so it can be
snapshot-tested and diffed between versions of a workflow."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cadenza.core.errors import CadenzaError
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import FailurePolicy, Graph, RouteMode, Step, StepKind, WorkflowIR

FORMATS = ("mermaid", "dot", "svg", "png")
START_ID, END_ID = "__start__", "__end__"
DOT_TIMEOUT = 30.0  # seconds; a diagram takes milliseconds
# Words Mermaid's flowchart lexer takes as keywords even where an id is expected.
_RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "classdef", "click",
             "linkstyle", "direction", "default", "call", "href", "interpolate"}  # fmt: skip
_MERMAID_ESCAPES = {
    '"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "|": "#124;", "`": "#96;",
    "[": "#91;", "]": "#93;", "{": "#123;", "}": "#125;", "\n": " ", "\r": " ",
}  # fmt: skip
# Mermaid (open, close) node brackets and DOT (shape, style) by kind; others get the default.
_MERMAID_SHAPES: dict[str, tuple[str, str]] = {
    "start": ("((", "))"), "end": ("((", "))"),
    StepKind.TASK: ("[", "]"), StepKind.CONDITIONAL: ("{", "}"), StepKind.WAIT: ("([", "])"),
    StepKind.ROLLBACK: ("{{", "}}"),
    StepKind.HUMAN_APPROVAL: ("[/", "/]"), StepKind.WEBHOOK: (">", "]"),
}  # fmt: skip
_DOT_SHAPES: dict[str, tuple[str, str]] = {
    "start": ("circle", ""), "end": ("doublecircle", ""),
    StepKind.TASK: ("box", ""), StepKind.CONDITIONAL: ("diamond", ""),
    StepKind.WAIT: ("box", "rounded"), StepKind.ROLLBACK: ("hexagon", ""),
    StepKind.HUMAN_APPROVAL: ("parallelogram", ""),
    StepKind.WEBHOOK: ("cds", ""),
}  # fmt: skip


class RenderError(CadenzaError):
    """A diagram could not be produced: an unknown format, or Graphviz missing or failing."""


class _Edge(NamedTuple):
    src: str
    dst: str
    label: str | None = None


class _Node(NamedTuple):
    id: str
    kind: str  # a StepKind, or "start"/"end" for the markers
    lines: tuple[str, ...]


class _Block(NamedTuple):
    """A composite step (or one parallel branch): a subgraph with its own nodes and edges.
    ``head``/``tail`` are leaf nodes inside it, the anchors DOT needs to draw edges that
    start or end at a cluster (Mermaid links to the subgraph itself)."""

    id: str
    lines: tuple[str, ...]
    items: tuple[_Node | _Block, ...]
    edges: tuple[_Edge, ...]
    head: str
    tail: str


class _Layout:
    """The format-neutral picture of a workflow; ids are unique and Mermaid-safe, derived
    from the step path (``fan__0__b2`` is ``b2`` in branch 0 of ``fan``)."""

    def __init__(self, ir: WorkflowIR) -> None:
        self.used = {START_ID, END_ID}
        self.blocks: dict[str, _Block] = {}
        graph = ir.graph
        items, edges, ids = self._graph(graph, "")
        edges = [_Edge(START_ID, ids[n]) for n in graph.entry if n in ids] + edges
        edges += [_Edge(ids[n], END_ID) for n in graph.steps if not graph.succs.get(n)]
        start, end = _Node(START_ID, "start", ("start",)), _Node(END_ID, "end", ("end",))
        self.items: tuple[_Node | _Block, ...] = (start, *items, end)
        self.edges = tuple(edges)

    def _id(self, path: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", path) or "step"
        if base.lower() in _RESERVED:
            base += "_"
        candidate, n = base, 2
        while candidate in self.used:
            candidate, n = f"{base}_{n}", n + 1
        self.used.add(candidate)
        return candidate

    def _graph(
        self, graph: Graph, prefix: str
    ) -> tuple[list[_Node | _Block], list[_Edge], dict[str, str]]:
        ids = {name: self._id(f"{prefix}__{name}" if prefix else name) for name in graph.steps}
        items = [self._item(step, ids[name]) for name, step in graph.steps.items()]
        edges: list[_Edge] = []
        for name, step in graph.steps.items():
            labels = _route_labels(step)
            edges += [_Edge(ids[name], ids[t], labels.get(t)) for t in graph.succs.get(name, ())]
        return items, edges, ids

    def _item(self, step: Step, sid: str) -> _Node | _Block:
        if step.branches:
            inner = [self._body(self._id(f"{sid}__{i}"), (f"branch {i}",), branch)
                     for i, branch in enumerate(step.branches)]  # fmt: skip
            return self._keep(_Block(sid, _block_lines(step), tuple(inner), (),
                                     inner[0].head, inner[-1].tail))  # fmt: skip
        if step.body is not None:
            return self._body(sid, _block_lines(step), step.body)
        return _Node(sid, step.kind, _node_lines(step))

    def _body(self, bid: str, lines: tuple[str, ...], graph: Graph) -> _Block:
        """A sub-graph as a block, anchored at its entry step and at its last sink."""
        items, edges, ids = self._graph(graph, bid)
        by_id = {item.id: item for item in items}
        first = by_id.get(ids[graph.entry[0]] if graph.entry else "", items[0])
        sinks = [by_id[ids[n]] for n in graph.steps if not graph.succs.get(n)] or items
        head = first.id if isinstance(first, _Node) else first.head
        tail = sinks[-1].id if isinstance(sinks[-1], _Node) else sinks[-1].tail
        return self._keep(_Block(bid, lines, tuple(items), tuple(edges), head, tail))

    def _keep(self, block: _Block) -> _Block:
        self.blocks[block.id] = block
        return block


def _name(fn: Callable[..., Any]) -> str:
    """A function's short name: ``<locals>`` paths and modules are noise in a diagram."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def _condition(cond: Any) -> str:
    """How a condition reads in a diagram: the expression text, or the function's name."""
    if isinstance(cond, Expression):
        return cond.source
    return cond if isinstance(cond, str) else _name(cond) if callable(cond) else str(cond)


def _route_labels(step: Step) -> dict[str, str]:
    """Edge labels of a conditional, by target; a target reached by several routes (or by a
    route and the default) shows them all."""
    if step.kind is not StepKind.CONDITIONAL:
        return {}
    found: dict[str, list[str]] = {}
    for route in step.routes:
        if route.condition is not None:
            text = _condition(route.condition)
        else:
            text = _name(step.router.fn) if step.router else ""
        found.setdefault(route.target, []).append(text)
    if step.default is not None:
        found.setdefault(step.default, []).append("default")
    return {t: " or ".join(dict.fromkeys(x for x in texts if x)) for t, texts in found.items()}


def _hints(step: Step) -> str:
    """The small print, on one line: what a reader of the diagram most often asks about a
    step (how long, how often, what undoes it, when it is skipped), never the whole policy."""
    policy, out = step.policy, []
    if policy.timeout is not None:
        out.append(f"timeout {policy.timeout:g}s")
    if policy.retry is not None and policy.retry.max_attempts > 1:
        out.append(f"retries {policy.retry.max_attempts - 1}")
    out += [f"breaker {policy.breaker}"] if policy.breaker else []
    out += [f"bulkhead {policy.bulkhead.name}"] if policy.bulkhead else []
    out += [f"compensate {_name(step.compensate.fn)}"] if step.compensate else []
    out += [f"fallback {_name(step.fallback.fn)}"] if step.fallback else []
    guard = step.options.get("guard")
    if guard:
        conds = [guard] if isinstance(guard, str | Expression) else list(guard)
        joiner = " or " if step.options.get("match") == "any" else " and "
        out.append("guard: " + joiner.join(_condition(c) for c in conds))
    for key, value in sorted(step.options.items()):
        if key not in ("guard", "match") and isinstance(value, str | int | float) and value != "":
            text = str(value)
            out.append(f"{key}={text if len(text) <= 40 else text[:37] + '...'}")
    return ", ".join(out)


def _node_lines(step: Step) -> tuple[str, ...]:
    lines = [step.name]
    if step.kind is StepKind.CONDITIONAL:
        detail = "conditional" + (", all matches" if step.mode is RouteMode.ALL else "")
        lines.append(detail + (f", router: {_name(step.router.fn)}" if step.router else ""))
    elif step.kind is StepKind.WAIT:
        lines.append(f"wait {step.seconds:g}s" if step.seconds is not None else "wait")
    elif step.kind is not StepKind.TASK:
        lines.append(str(step.kind))
    hints = _hints(step)
    return (*lines, hints) if hints else tuple(lines)


def _block_lines(step: Step) -> tuple[str, ...]:
    details = [text for shown, text in [
        (step.items is not None, f"over: {_condition(step.items)}"),
        (step.until is not None, f"until: {_condition(step.until)}"),
        (step.max_iterations is not None, f"max {step.max_iterations}"),
        (step.max_concurrent is not None, f"{step.max_concurrent} at a time"),
        (step.on_failure is FailurePolicy.COLLECT, "collect errors"),
    ] if shown]  # fmt: skip
    title = f"{step.kind} {step.name}" + (f" ({', '.join(details)})" if details else "")
    hints = _hints(step)
    return (title, hints) if hints else (title,)


def _mermaid_text(lines: tuple[str, ...]) -> str:
    return '"' + "<br/>".join("".join(_MERMAID_ESCAPES.get(c, c) for c in s) for s in lines) + '"'


def _mermaid_items(items: tuple[_Node | _Block, ...], depth: int) -> Iterator[str]:
    pad = "    " * depth
    for item in items:
        if isinstance(item, _Node):
            open_, close = _MERMAID_SHAPES.get(item.kind, ("(", ")"))
            yield f"{pad}{item.id}{open_}{_mermaid_text(item.lines)}{close}"
            continue
        yield f"{pad}subgraph {item.id} [{_mermaid_text(item.lines)}]"
        yield from _mermaid_items(item.items, depth + 1)
        yield from _mermaid_edges(item.edges, depth + 1)
        yield f"{pad}end"


def _mermaid_edges(edges: tuple[_Edge, ...], depth: int) -> Iterator[str]:
    for e in edges:
        label = f"|{_mermaid_text((e.label,))}|" if e.label else ""
        yield f"{'    ' * depth}{e.src} -->{label} {e.dst}"


def to_mermaid(ir: WorkflowIR) -> str:
    """The workflow as a Mermaid ``flowchart TD`` (renders on GitHub, in docs, in notebooks)."""
    layout = _Layout(ir)
    lines = ["flowchart TD", f"    %% {' '.join(ir.name.splitlines())} (version {ir.version})"]
    lines += _mermaid_items(layout.items, 1)
    lines += _mermaid_edges(layout.edges, 1)
    return "\n".join(lines) + "\n"


def _dot_text(lines: tuple[str, ...]) -> str:
    def one(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")

    return '"' + "\\n".join(one(s) for s in lines) + '"'


def _dot_items(
    items: tuple[_Node | _Block, ...], blocks: dict[str, _Block], depth: int
) -> Iterator[str]:
    pad = "  " * depth
    for item in items:
        if isinstance(item, _Node):
            shape, style = _DOT_SHAPES.get(item.kind, ("ellipse", ""))
            attrs = f"label={_dot_text(item.lines)}, shape={shape}"
            yield f'{pad}"{item.id}" [{attrs}{f", style={style}" if style else ""}];'
            continue
        yield f'{pad}subgraph "cluster_{item.id}" {{'
        yield f'{pad}  label={_dot_text(item.lines)}; style="rounded,dashed";'
        yield from _dot_items(item.items, blocks, depth + 1)
        yield from _dot_edges(item.edges, blocks, depth + 1)
        yield f"{pad}}}"


def _dot_edges(edges: tuple[_Edge, ...], blocks: dict[str, _Block], depth: int) -> Iterator[str]:
    """Edges; one touching a composite step is drawn to (from) a leaf inside its cluster and
    clipped at the cluster's border, the way DOT draws an edge to a subgraph."""
    for e in edges:
        src, dst, attrs = e.src, e.dst, []
        if e.label:
            attrs.append(f"label={_dot_text((e.label,))}")
        if src in blocks:
            attrs.append(f'ltail="cluster_{src}"')
            src = blocks[src].tail
        if dst in blocks:
            attrs.append(f'lhead="cluster_{dst}"')
            dst = blocks[dst].head
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        yield f'{"  " * depth}"{src}" -> "{dst}"{suffix};'


def to_dot(ir: WorkflowIR) -> str:
    """The workflow as a Graphviz digraph; composite steps are clusters (``compound=true``)."""
    layout = _Layout(ir)
    lines = [
        f"digraph {_dot_text((ir.name,))} {{",
        f"  // version {ir.version}",
        '  graph [rankdir=TB, compound=true, fontname="Helvetica", fontsize=11];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    lines += _dot_items(layout.items, layout.blocks, 1)
    lines += _dot_edges(layout.edges, layout.blocks, 1)
    return "\n".join([*lines, "}"]) + "\n"


def _graphviz(dot_text: str, fmt: str) -> bytes:
    """Run ``dot -T<fmt>``: Graphviz is a system binary, not a Python dependency, so it is
    looked up at call time and its absence is an error that says how to get it."""
    binary = shutil.which("dot")
    if binary is None:
        raise RenderError(
            f"rendering {fmt} needs the Graphviz 'dot' program, which is not on PATH: "
            "install Graphviz (apt-get install graphviz) or use --format mermaid/dot"
        )
    try:
        done = subprocess.run(
            [binary, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
            timeout=DOT_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:  # timeout: dot is stuck, not slow
        raise RenderError(f"could not run Graphviz 'dot' ({binary}): {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise RenderError(f"Graphviz 'dot' failed (exit {done.returncode}): {err}")
    return done.stdout


def render(ir: WorkflowIR, fmt: str, output: Path | None = None) -> bytes | str:
    """The diagram in ``fmt`` (text for mermaid/dot, bytes for svg/png), also written to
    ``output`` when given."""
    if fmt == "mermaid":
        result: bytes | str = to_mermaid(ir)
    elif fmt == "dot":
        result = to_dot(ir)
    elif fmt in ("svg", "png"):
        result = _graphviz(to_dot(ir), fmt)
    else:
        raise RenderError(f"unknown diagram format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if output is not None:
        data = result if isinstance(result, bytes) else result.encode()
        Path(output).write_bytes(data)
    return result
