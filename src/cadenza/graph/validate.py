"""Compile-time checks of a graph, with messages that locate the problem and suggest a fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from cadenza.core.errors import DefinitionError
from cadenza.core.state import StateSchema
from cadenza.graph.expressions import Expression
from cadenza.graph.ir import AgentSpec, Graph, OrchestratorSpec, Step, StepKind

#: Kinds that compile and run in this version.
AVAILABLE = frozenset(
    {
        StepKind.TASK,
        StepKind.PARALLEL,
        StepKind.MAP,
        StepKind.CONDITIONAL,
        StepKind.LOOP,
        StepKind.WAIT,
        StepKind.ROLLBACK,
        StepKind.WEBHOOK,
        StepKind.HUMAN_APPROVAL,
        StepKind.REACT,
        StepKind.ORCHESTRATOR,
        StepKind.WORKER,
    }
)


def validate_workflow(graph: Graph, schema: StateSchema, *, path: str) -> None:
    for name, step in graph.steps.items():
        _check_step(step, graph, schema, f"{path}.{name}")
    _check_edges(graph, path)
    _check_cycles(graph, path)
    _check_reachable(graph, path)


def _check_step(step: Step, graph: Graph, schema: StateSchema, path: str) -> None:
    if step.kind not in AVAILABLE:
        raise DefinitionError(
            f"step kind {step.kind.value.upper()} is not available yet in this version of Cadenza",
            path=path,
        )
    _check_agent(step, path)
    if step.writes is not None:
        missing = schema.check_keys(sorted(step.writes))
        if missing:
            raise DefinitionError(
                f"step writes {_keys(missing)} that the state schema {schema.name} lacks"
                + _suggest(missing[0], schema.fields),
                path=path,
            )
    for i, route in enumerate(step.routes):
        _check_expression(route.condition, schema, f"{path}.routes[{i}]")
    _check_expression(step.until, schema, f"{path}.until")
    for i, cond in enumerate(step.guard):
        _check_expression(cond, schema, f"{path}.when[{i}]")
    if step.kind is StepKind.MAP and isinstance(step.items, str):
        missing = schema.check_keys([step.items])
        if missing:
            raise DefinitionError(
                f"items refers to state key {step.items!r}, which the schema {schema.name} lacks"
                + _suggest(step.items, schema.fields),
                path=f"{path}.items",
            )
    for target in step.targets():
        if target not in graph.steps:
            raise DefinitionError(
                f"routes to unknown step {target!r}" + _suggest(target, graph.steps), path=path
            )
    for i, branch in enumerate(step.branches):
        validate_workflow(branch, schema, path=f"{path}.branches[{i}]")
    if step.body is not None:
        validate_workflow(step.body, schema, path=f"{path}.body")


def _check_agent(step: Step, path: str) -> None:
    if step.kind is StepKind.WORKER:
        raise DefinitionError(
            "a WORKER executes subtasks of an ORCHESTRATOR, not a step of the flow: declare it "
            "with wf.worker(...) and name it in wf.orchestrator(workers=[...])",
            path=path,
        )
    if step.kind is StepKind.REACT and not isinstance(step.agent, AgentSpec):
        raise DefinitionError(
            "a REACT step needs a model: wf.react(name, model=..., tools=[...])", path=path
        )
    if step.kind is StepKind.ORCHESTRATOR and not isinstance(step.agent, OrchestratorSpec):
        raise DefinitionError(
            "an ORCHESTRATOR needs a planner and workers: wf.orchestrator(name, planner=..., "
            "workers=[...])",
            path=path,
        )


def _check_expression(cond: object, schema: StateSchema, path: str) -> None:
    if not isinstance(cond, Expression) or schema.open:
        return
    missing = schema.check_keys(sorted(cond.variables))
    if missing:
        raise DefinitionError(
            f"condition {cond.source!r} refers to {_keys(missing)} that the state schema "
            f"{schema.name} lacks" + _suggest(missing[0], schema.fields),
            path=path,
        )


def _check_edges(graph: Graph, path: str) -> None:
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.steps:
                raise DefinitionError(
                    f"edge {a!r} → {b!r} names unknown step {end!r}" + _suggest(end, graph.steps),
                    path=f"{path}.edges",
                )
        source = graph.steps[a]
        if source.kind is StepKind.CONDITIONAL and b not in source.targets():
            raise DefinitionError(
                f"conditional step {a!r} has a plain edge to {b!r}; make {b!r} one of its routes "
                "or its default",
                path=f"{path}.{a}",
            )
    for name in graph.entry:
        if name not in graph.steps:
            raise DefinitionError(
                f"start step {name!r} does not exist" + _suggest(name, graph.steps),
                path=f"{path}.start",
            )


def _check_cycles(graph: Graph, path: str) -> None:
    """Iterative depth-first search (graphs of thousands of steps are normal)."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph.steps, white)
    for root in graph.steps:
        if color[root] != white:
            continue
        color[root] = grey
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            succs = graph.succs[node]
            if i == len(succs):
                color[node] = black
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            nxt = succs[i]
            if color[nxt] == grey:
                names = [n for n, _ in stack]
                cycle = [*names[names.index(nxt) :], nxt]
                raise DefinitionError(
                    "cycle without a loop guard: "
                    + " → ".join(cycle)
                    + "; repeat work with a loop step (wf.loop(..., max_iterations=N))",
                    path=f"{path}.{nxt}",
                )
            if color[nxt] == white:
                color[nxt] = grey
                stack.append((nxt, 0))


def _check_reachable(graph: Graph, path: str) -> None:
    seen: set[str] = set()
    todo = list(graph.entry)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(graph.succs[node])
    unreachable = [n for n in graph.steps if n not in seen]
    if unreachable:
        raise DefinitionError(
            f"{_keys(unreachable, 'step')} unreachable from the start "
            f"({', '.join(graph.entry)}); connect {'it' if len(unreachable) == 1 else 'them'} "
            "with wf.edge(...) or wf.chain(...), or name every first step with wf.start(...)",
            path=f"{path}.{unreachable[0]}",
        )


def _keys(names: Iterable[str], word: str = "key") -> str:
    names = list(names)
    quoted = ", ".join(repr(n) for n in names)
    if word == "step":
        return f"step {quoted} is" if len(names) == 1 else f"steps {quoted} are"
    return f"{word} {quoted}" if len(names) == 1 else f"{word}s {quoted}"


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" — did you mean {close[0]!r}?" if close else ""
