"""A compiled LangGraph graph (LangGraph's own or the facade's) as one step of a Cadenza
workflow: ``wf.task(as_step(graph))``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cadenza.core.errors import DefinitionError

__all__ = ("as_step",)


def _input_keys(graph: Any) -> tuple[str, ...]:
    builder = getattr(graph, "builder", None)
    schemas = getattr(builder, "schemas", None)
    if not schemas:
        raise DefinitionError(
            f"cannot tell which state keys {graph!r} takes; pass as_step(graph, inputs=[...])",
            path="as_step.inputs",
        )
    keys = schemas[builder.input_schema]
    return tuple(k for k in keys if k != "__root__" and not isinstance(keys[k], type))


def as_step(
    graph: Any,
    *,
    name: str | None = None,
    inputs: Iterable[str] | None = None,
    outputs: Iterable[str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """A step handler that runs ``graph`` on the workflow state's keys the graph takes
    (``inputs``) and returns the graph's output (or its ``outputs`` keys) as the update.

    A graph compiled with a checkpointer runs on the thread ``ctx.idempotency_key``: when the
    step runs again after a crash, an unfinished thread is resumed rather than restarted. A
    graph that stops at an interrupt fails the step, since it would wait for a resume the
    workflow cannot give; use a ``wf.approval`` step for people in the loop."""
    if not hasattr(graph, "ainvoke"):
        raise DefinitionError(f"as_step needs a compiled graph, got {graph!r}", path="as_step")
    in_keys = tuple(inputs) if inputs is not None else _input_keys(graph)
    out_keys = None if outputs is None else frozenset(outputs)
    saved = getattr(graph, "checkpointer", None) not in (None, False, True)

    async def run_graph(state: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        payload: Any = {k: state[k] for k in in_keys if k in state}
        run_config = {**(config or {})}
        if saved:
            run_config["configurable"] = {
                **run_config.get("configurable", {}),
                "thread_id": ctx.idempotency_key,
            }
            if (await graph.aget_state(run_config)).next:
                payload = None
        result = await graph.ainvoke(payload, run_config)
        if isinstance(result, Mapping) and "__interrupt__" in result:
            raise RuntimeError(
                f"graph {graph_name!r} stopped at an interrupt "
                f"({[getattr(i, 'value', i) for i in result['__interrupt__']]!r}); a step "
                "cannot wait for a resume, use a wf.approval step instead"
            )
        if not isinstance(result, Mapping):
            raise TypeError(f"graph {graph_name!r} returned {type(result).__name__}, not a dict")
        return {k: v for k, v in result.items() if out_keys is None or k in out_keys}

    graph_name = name or getattr(graph, "name", None) or "langgraph"
    run_graph.__name__ = graph_name
    run_graph.__qualname__ = graph_name
    return run_graph
