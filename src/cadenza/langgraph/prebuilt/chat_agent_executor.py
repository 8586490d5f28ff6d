"""``create_react_agent``: a model that calls tools in a loop until it answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage

from cadenza.langgraph._keys import END, START
from cadenza.langgraph.graph.message import add_messages
from cadenza.langgraph.graph.state import StateGraph
from cadenza.langgraph.managed import RemainingSteps
from cadenza.langgraph.prebuilt.tool_node import ToolNode
from cadenza.langgraph.types import Send

__all__ = ("AgentState", "create_react_agent")


class AgentState(TypedDict):
    messages: Annotated[Sequence[AnyMessage], add_messages]
    remaining_steps: RemainingSteps


def _prompt(prompt: Any) -> Callable[[dict[str, Any]], list[BaseMessage]]:
    if prompt is None:
        return lambda state: list(state["messages"])
    if isinstance(prompt, str):
        system = SystemMessage(content=prompt)
        return lambda state: [system, *state["messages"]]
    if isinstance(prompt, SystemMessage):
        return lambda state: [prompt, *state["messages"]]
    if callable(prompt):
        return prompt
    raise ValueError(f"Got unexpected type for `prompt`: {type(prompt)}")


def _should_continue(state: dict[str, Any]) -> Any:
    """END when the model answered; otherwise one ``tools`` task per tool call."""
    last = state["messages"][-1]
    if not isinstance(last, AIMessage) or not last.tool_calls:
        return END
    return [
        Send(
            "tools",
            {"__type": "tool_call_with_context", "tool_call": call, "state": state},
        )
        for call in last.tool_calls
    ]


def create_react_agent(
    model: Any,
    tools: Sequence[Any] | ToolNode,
    *,
    prompt: Any = None,
    state_schema: Any = None,
    checkpointer: Any = None,
    store: Any = None,
    interrupt_before: list[str] | None = None,
    interrupt_after: list[str] | None = None,
    debug: bool = False,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """An ``agent`` node (the model, bound to the tools) and a ``tools`` node that gets one
    task per tool call; stops when the model answers without tool calls or when the steps
    left would not allow another round."""
    if kwargs:
        raise ValueError(
            f"create_react_agent: {sorted(kwargs)} not supported by the Cadenza facade"
        )
    tool_node = tools if isinstance(tools, ToolNode) else ToolNode(tools)
    tool_list = list(tool_node.tools_by_name.values())
    bound = model.bind_tools(tool_list) if tool_list and hasattr(model, "bind_tools") else model
    make_input = _prompt(prompt)

    def _answer(state: dict[str, Any], response: BaseMessage) -> dict[str, Any]:
        response.name = name
        calls = isinstance(response, AIMessage) and response.tool_calls
        if calls and state.get("remaining_steps", 3) < 2:
            return {
                "messages": [
                    AIMessage(
                        id=response.id,
                        content="Sorry, need more steps to process this request.",
                    )
                ]
            }
        return {"messages": [response]}

    def call_model(state: dict[str, Any], config: Any) -> dict[str, Any]:
        return _answer(state, bound.invoke(make_input(state), config))

    async def acall_model(state: dict[str, Any], config: Any) -> dict[str, Any]:
        return _answer(state, await bound.ainvoke(make_input(state), config))

    class _Agent:
        """The model node, with a sync and an async form."""

        __name__ = "agent"

        def invoke(self, state: dict[str, Any], config: Any = None) -> dict[str, Any]:
            return call_model(state, config)

        async def ainvoke(self, state: dict[str, Any], config: Any = None) -> dict[str, Any]:
            return await acall_model(state, config)

    graph = StateGraph(state_schema or AgentState)
    graph.add_node("agent", _Agent())
    graph.add_edge(START, "agent")
    if tool_list:
        graph.add_node("tools", tool_node)
        graph.add_conditional_edges("agent", _should_continue, ["tools", END])
        graph.add_edge("tools", "agent")
    else:
        graph.add_edge("agent", END)
    return graph.compile(
        checkpointer=checkpointer,
        store=store,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
        debug=debug,
        name=name or "LangGraph",
    )
