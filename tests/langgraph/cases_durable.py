"""Cases with a checkpointer: interrupts and resumes, breakpoints, ``update_state``,
history queries, ``Command`` input, several runs on one thread."""

import operator
from typing import Annotated, Any, TypedDict

from tests.langgraph.harness import Case, history_op, invocation, operation, snapshot, state_op


class Ask(TypedDict):
    question: str
    answers: Annotated[list[str], operator.add]


def _ask_graph(
    lib: Any, saver: Any, *asking: str, parallel: bool = False, **compile_kw: Any
) -> Any:
    g = lib.graph.StateGraph(Ask)
    for name in asking:

        def node(s: Ask, name: str = name) -> dict[str, Any]:
            got = lib.types.interrupt({"who": name, "q": s["question"]})
            return {"answers": [f"{name}={got}"]}

        g.add_node(name, node)
    g.add_node("done", lambda s: {"answers": ["done"]})
    if parallel:
        for name in asking:
            g.add_edge(lib.graph.START, name)
        g.add_edge(list(asking), "done")
    else:
        previous = lib.graph.START
        for name in asking:
            g.add_edge(previous, name)
            previous = name
        g.add_edge(previous, "done")
    return g.compile(checkpointer=saver, **compile_kw)


def single_interrupt(lib: Any, saver: Any) -> Any:
    return _ask_graph(lib, saver, "human")


def two_interrupts_in_node(lib: Any, saver: Any) -> Any:
    def both(s: Ask) -> dict[str, Any]:
        first = lib.types.interrupt("first?")
        second = lib.types.interrupt(f"second after {first}?")
        return {"answers": [first, second]}

    g = lib.graph.StateGraph(Ask)
    g.add_node("both", both)
    g.add_edge(lib.graph.START, "both")
    return g.compile(checkpointer=saver)


def parallel_interrupts(lib: Any, saver: Any) -> Any:
    return _ask_graph(lib, saver, "left", "right", parallel=True)


def _resume_all(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    """Answer every pending interrupt by id (ids differ between engines; values do not)."""
    pending = app.get_state(config).interrupts
    answers = {i.id: f"answer-{i.value['who']}" for i in pending}
    return lib.types.Command(resume=answers)


def interrupt_then_sibling_done(lib: Any, saver: Any) -> Any:
    """One task of a step pauses, its sibling finishes; on resume the sibling's writes are
    reused, not recomputed."""
    g = lib.graph.StateGraph(Ask)

    def asker(s: Ask) -> dict[str, Any]:
        return {"answers": [f"asked:{lib.types.interrupt('ok?')}"]}

    g.add_node("asker", asker)
    g.add_node("worker", lambda s: {"answers": ["worked"]})
    g.add_edge(lib.graph.START, "asker")
    g.add_edge(lib.graph.START, "worker")
    return g.compile(checkpointer=saver)


def before_after(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Ask)
    for name in ("a", "b", "c"):
        g.add_node(name, lambda s, name=name: {"answers": [name]})
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    return g.compile(checkpointer=saver, interrupt_before=["b"], interrupt_after=["b"])


def before_all(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Ask)
    for name in ("a", "b"):
        g.add_node(name, lambda s, name=name: {"answers": [name]})
    g.add_edge(lib.graph.START, "a")
    g.add_edge("a", "b")
    return g.compile(checkpointer=saver, interrupt_before="*")


def update_then_resume(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Ask)
    g.add_node("draft", lambda s: {"answers": ["draft"], "question": s["question"] + "!"})
    g.add_node("review", lambda s: {"answers": [f"reviewed {s['question']}"]})
    g.add_edge(lib.graph.START, "draft")
    g.add_edge("draft", "review")
    return g.compile(checkpointer=saver, interrupt_before=["review"])


def _update(values: Any, as_node: str | None = None) -> Any:
    def run(lib: Any, app: Any, config: dict[str, Any]) -> Any:
        result = app.update_state(config, values, as_node=as_node)
        return sorted(result["configurable"])

    return operation(f"update_state({as_node})", run)


def send_interrupt(lib: Any, saver: Any) -> Any:
    class S(TypedDict):
        items: list[str]
        out: Annotated[list[str], operator.add]

    def fan(s: S) -> list[Any]:
        return [lib.types.Send("check", {"item": i}) for i in s["items"]]

    def check(arg: dict[str, Any]) -> dict[str, Any]:
        if arg["item"] == "b":
            return {"out": [f"b:{lib.types.interrupt('approve b?')}"]}
        return {"out": [arg["item"]]}

    g = lib.graph.StateGraph(S)
    g.add_node("check", check)
    g.add_conditional_edges(lib.graph.START, fan)
    return g.compile(checkpointer=saver)


def command_input(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Ask)
    for name in ("a", "b", "c"):
        g.add_node(name, lambda s, name=name: {"answers": [name]})
    g.add_edge(lib.graph.START, "a")
    return g.compile(checkpointer=saver)


def conversation(lib: Any, saver: Any) -> Any:
    g = lib.graph.StateGraph(Ask)
    g.add_node("reply", lambda s: {"answers": [f"re:{s['question']}"]})
    g.add_edge(lib.graph.START, "reply")
    return g.compile(checkpointer=saver)


def no_saver_resume(lib: Any, saver: Any) -> Any:
    return conversation(lib, None)


def _history(**kwargs: Any) -> Any:
    def run(lib: Any, app: Any, config: dict[str, Any]) -> Any:
        options = dict(kwargs)
        if options.pop("before_second", False):
            states = list(app.get_state_history(config))
            options["before"] = states[1].config
        return [snapshot(s) for s in app.get_state_history(config, **options)]

    return operation(f"history({sorted(kwargs)})", run)


CASES = [
    Case(
        "single_interrupt",
        single_interrupt,
        [
            invocation({"question": "name?"}),
            state_op(),
            invocation(lambda lib: lib.types.Command(resume="ada")),
        ],
        checkpointer=True,
    ),
    Case(
        "two_interrupts_in_node",
        two_interrupts_in_node,
        [
            invocation({"question": "q"}),
            invocation(lambda lib: lib.types.Command(resume="one")),
            state_op(),
            invocation(lambda lib: lib.types.Command(resume="two")),
        ],
        checkpointer=True,
    ),
    Case(
        "parallel_interrupts",
        parallel_interrupts,
        [
            invocation({"question": "q"}),
            state_op(),
            operation("resume_one_value", lambda lib, app, cfg: _single_resume(lib, app, cfg)),
        ],
        checkpointer=True,
    ),
    Case(
        "parallel_interrupts_by_id",
        parallel_interrupts,
        [
            invocation({"question": "q"}),
            operation(
                "resume_map",
                lambda lib, app, cfg: _norm_invoke(app, _resume_all(lib, app, cfg), cfg),
            ),
        ],
        checkpointer=True,
    ),
    Case(
        "interrupt_then_sibling_done",
        interrupt_then_sibling_done,
        [invocation({"question": "q"}), invocation(lambda lib: lib.types.Command(resume="yes"))],
        checkpointer=True,
    ),
    Case(
        "interrupt_before_after",
        before_after,
        [invocation({"question": "q"}), state_op(), invocation(None), state_op(), invocation(None)],
        checkpointer=True,
    ),
    Case(
        "interrupt_before_all",
        before_all,
        [invocation({"question": "q"}), invocation(None), invocation(None), invocation(None)],
        checkpointer=True,
    ),
    Case(
        "update_state_as_node",
        update_then_resume,
        [
            invocation({"question": "q"}),
            _update({"question": "edited", "answers": ["human"]}, "draft"),
            state_op(),
            invocation(None),
        ],
        checkpointer=True,
    ),
    Case(
        "update_state_inferred",
        update_then_resume,
        [invocation({"question": "q"}), _update({"answers": ["inferred"]}), invocation(None)],
        checkpointer=True,
    ),
    Case(
        "update_state_as_later_node",
        update_then_resume,
        [invocation({"question": "q"}), _update({"answers": ["skip"]}, "review"), invocation(None)],
        checkpointer=True,
    ),
    Case(
        "update_state_fresh_thread",
        conversation,
        [_update({"question": "seeded"}), state_op(), invocation(None)],
        checkpointer=True,
    ),
    Case(
        "update_state_unknown_node",
        conversation,
        [invocation({"question": "hi"}), _update({"answers": ["x"]}, "nope")],
        checkpointer=True,
    ),
    Case(
        "send_interrupt",
        send_interrupt,
        [
            invocation({"items": ["a", "b", "c"]}),
            state_op(),
            invocation(lambda lib: lib.types.Command(resume="ok")),
        ],
        checkpointer=True,
    ),
    Case(
        "command_input",
        command_input,
        [
            invocation({"question": "q"}),
            invocation(lambda lib: lib.types.Command(update={"question": "new"}, goto=["b", "c"])),
        ],
        checkpointer=True,
    ),
    Case(
        "conversation",
        conversation,
        [
            invocation({"question": "one"}),
            invocation({"question": "two"}),
            invocation(None),
            _history(limit=2),
            _history(filter={"source": "input"}),
            _history(before_second=True),
        ],
        checkpointer=True,
    ),
    Case(
        "resume_nothing_pending",
        conversation,
        [invocation({"question": "one"}), invocation(lambda lib: lib.types.Command(resume="x"))],
        checkpointer=True,
    ),
    Case(
        "resume_without_checkpointer",
        no_saver_resume,
        [invocation(lambda lib: lib.types.Command(resume="x"))],
    ),
    Case("history_of_new_thread", conversation, [history_op(), state_op()], checkpointer=True),
]


def _norm_invoke(app: Any, value: Any, config: dict[str, Any]) -> Any:
    from tests.langgraph.harness import norm

    return norm(app.invoke(value, config, durability="sync"))


def _single_resume(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    return _norm_invoke(app, lib.types.Command(resume="same for all"), config)
