"""A drawable view of a compiled graph (``get_graph()``): nodes, edges, Mermaid text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadenza.langgraph._keys import END, START

if TYPE_CHECKING:
    from cadenza.langgraph.graph.compiled import CompiledStateGraph


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    conditional: bool = False


@dataclass(slots=True)
class DrawableGraph:
    nodes: list[str] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def draw_mermaid(self) -> str:
        lines = ["graph TD;"]
        for node in self.nodes:
            lines.append(f"\t{node}({node})")
        for e in self.edges:
            arrow = "-.->" if e.conditional else "-->"
            lines.append(f"\t{e.source} {arrow} {e.target};")
        return "\n".join(lines) + "\n"


def draw_graph(graph: CompiledStateGraph) -> Any:
    builder = graph.builder
    nodes = [START, *builder.nodes, END]
    edges = [Edge(s, t) for s, t in sorted(builder.edges)]
    edges += [Edge(s, t) for starts, t in sorted(builder.waiting_edges) for s in starts]
    for source, branches in builder.branches.items():
        for branch in branches.values():
            targets = (
                list(branch.ends.values()) if branch.ends else [n for n in nodes if n != START]
            )
            edges += [Edge(source, t, True) for t in targets]
    for name, spec in builder.nodes.items():
        ends = spec.ends.keys() if isinstance(spec.ends, dict) else spec.ends
        edges += [Edge(name, t, True) for t in ends]
    return DrawableGraph(nodes, edges)
