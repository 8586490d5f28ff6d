"""Cases: chat messages (``add_messages``, ``MessagesState``), ``ToolNode`` with
``tools_condition`` driven by a scripted chat model, the ``messages`` stream mode and
``create_react_agent``."""

import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool

from tests.langgraph.harness import Case, invocation, norm, operation


class ScriptedChat(BaseChatModel):
    """Answers from a script, one reply per call; replies may carry tool calls. Streams a
    reply word by word."""

    script: list[AIMessage]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChat":
        return self

    def _next(self) -> AIMessage:
        reply = self.script[self.calls % len(self.script)]
        self.calls += 1
        return reply.model_copy()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next()
        words = str(reply.content).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = AIMessageChunk(
                content=word if last else word + " ",
                tool_call_chunks=[
                    {"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": n}
                    for n, c in enumerate(reply.tool_calls)
                ]
                if last
                else [],
            )
            yield ChatGenerationChunk(message=chunk)


def _json(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args)


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@tool
def broken(x: int) -> int:
    """Always fails."""
    raise RuntimeError(f"broken with {x}")


def _script() -> list[AIMessage]:
    return [
        AIMessage(
            content="let me compute",
            tool_calls=[
                {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-1"},
                {"name": "shout", "args": {"text": "hi"}, "id": "call-2"},
            ],
        ),
        AIMessage(content="the answer is 5 and HI"),
    ]


def _agent_graph(lib: Any, saver: Any, tools: list[Any], script: list[AIMessage]) -> Any:
    model = ScriptedChat(script=script)

    def agent(state: Any) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    g = lib.graph.StateGraph(lib.graph.MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", lib.prebuilt.ToolNode(tools))
    g.add_edge(lib.graph.START, "agent")
    g.add_conditional_edges("agent", lib.prebuilt.tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=saver)


def tool_loop(lib: Any, saver: Any) -> Any:
    return _agent_graph(lib, saver, [add, shout], _script())


def tool_errors(lib: Any, saver: Any) -> Any:
    """An unknown tool and bad arguments become error messages; a failing tool raises."""
    script = [
        AIMessage(
            content="try",
            tool_calls=[
                {"name": "nope", "args": {}, "id": "c1"},
                {"name": "add", "args": {"a": "x"}, "id": "c2"},
            ],
        ),
        AIMessage(
            content="calling broken", tool_calls=[{"name": "broken", "args": {"x": 1}, "id": "c3"}]
        ),
    ]
    return _agent_graph(lib, saver, [add, broken], script)


def tool_errors_handled(lib: Any, saver: Any) -> Any:
    model = ScriptedChat(
        script=[
            AIMessage(content="go", tool_calls=[{"name": "broken", "args": {"x": 2}, "id": "c9"}]),
            AIMessage(content="done"),
        ]
    )
    g = lib.graph.StateGraph(lib.graph.MessagesState)
    g.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    g.add_node("tools", lib.prebuilt.ToolNode([broken], handle_tool_errors=True))
    g.add_edge(lib.graph.START, "agent")
    g.add_conditional_edges("agent", lib.prebuilt.tools_condition, ["tools", lib.graph.END])
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=saver)


def tool_command(lib: Any, saver: Any) -> Any:
    class S(TypedDict):
        messages: Annotated[list[Any], lib.graph.add_messages]
        user: str

    @tool
    def set_user(name: str) -> Any:
        """Remember the user's name."""
        return lib.types.Command(
            update={
                "user": name,
                "messages": [ToolMessage(f"saved {name}", tool_call_id="call-u")],
            }
        )

    model = ScriptedChat(
        script=[
            AIMessage(
                content="",
                tool_calls=[{"name": "set_user", "args": {"name": "ada"}, "id": "call-u"}],
            ),
            AIMessage(content="hello ada"),
        ]
    )
    g = lib.graph.StateGraph(S)
    g.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    g.add_node("tools", lib.prebuilt.ToolNode([set_user]))
    g.add_edge(lib.graph.START, "agent")
    g.add_conditional_edges("agent", lib.prebuilt.tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=saver)


def injected_state(lib: Any, saver: Any) -> Any:
    class S(TypedDict):
        messages: Annotated[list[Any], lib.graph.add_messages]
        city: str

    @tool
    def weather(day: str, city: Annotated[str, lib.prebuilt.InjectedState("city")]) -> str:
        """Weather for a day in the user's city."""
        return f"sunny in {city} on {day}"

    model = ScriptedChat(
        script=[
            AIMessage(
                content="", tool_calls=[{"name": "weather", "args": {"day": "mon"}, "id": "w1"}]
            ),
            AIMessage(content="it is sunny"),
        ]
    )
    g = lib.graph.StateGraph(S)
    g.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    g.add_node("tools", lib.prebuilt.ToolNode([weather]))
    g.add_edge(lib.graph.START, "agent")
    g.add_conditional_edges("agent", lib.prebuilt.tools_condition)
    g.add_edge("tools", "agent")
    return g.compile(checkpointer=saver)


def add_messages_rules(lib: Any, saver: Any) -> Any:
    """Replace by id, remove by id, tuples and dicts become messages."""

    class S(TypedDict):
        messages: Annotated[list[Any], lib.graph.add_messages]
        count: Annotated[int, operator.add]

    def edit(s: S) -> dict[str, Any]:
        first = s["messages"][0]
        return {
            "messages": [
                HumanMessage(content="edited", id=first.id),
                RemoveMessage(id=s["messages"][1].id),
                ("ai", "from a tuple"),
                {"role": "user", "content": "from a dict"},
            ],
            "count": 1,
        }

    g = lib.graph.StateGraph(S)
    g.add_node("edit", edit)
    g.add_edge(lib.graph.START, "edit")
    return g.compile(checkpointer=saver)


def _message_stream(lib: Any, app: Any, config: dict[str, Any]) -> Any:
    out = []
    for message, meta in app.stream(
        {"messages": [HumanMessage(content="what is 2+3?", id="h1")]},
        config,
        stream_mode="messages",
    ):
        out.append((type(message).__name__, norm(message.content), meta["langgraph_node"]))
    return out


def react_agent(lib: Any, saver: Any) -> Any:
    return lib.prebuilt.create_react_agent(
        ScriptedChat(script=_script()), [add, shout], prompt="be concise", checkpointer=saver
    )


_ASK = {"messages": [HumanMessage(content="what is 2+3?", id="h1")]}

CASES = [
    Case("tool_loop", tool_loop, [invocation(_ASK)], checkpointer=True),
    Case("tool_errors", tool_errors, [invocation(_ASK)], checkpointer=True),
    Case("tool_errors_handled", tool_errors_handled, [invocation(_ASK)], checkpointer=True),
    Case("tool_command", tool_command, [invocation(_ASK)], checkpointer=True),
    Case("tool_injected_state", injected_state, [invocation({**_ASK, "city": "Oslo"})]),
    Case(
        "add_messages_rules",
        add_messages_rules,
        [
            invocation(
                {
                    "messages": [
                        HumanMessage(content="one", id="m1"),
                        AIMessage(content="two", id="m2"),
                    ],
                    "count": 0,
                }
            )
        ],
        checkpointer=True,
    ),
    Case(
        "messages_stream",
        tool_loop,
        [operation("messages", _message_stream)],
        checkpointer=True,
        only=("invoke",),
    ),
    Case("react_agent", react_agent, [invocation(_ASK)], checkpointer=True),
]
