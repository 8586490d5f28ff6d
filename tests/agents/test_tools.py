"""Tools: schemas from signatures and docstrings, validation errors and exceptions as
observations, async tools, and the execution context."""

from __future__ import annotations

import asyncio
import threading
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import BaseModel

from cadenza import DefinitionError, ExecutionContext, Tool, WorkflowConfiguration, tool
from cadenza.agents.tools import parse_docstring
from cadenza.core.ids import RunId


class Priority(StrEnum):
    LOW = "low"
    HIGH = "high"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


@tool
def ship(order_id: int, address: Address, priority: Priority = Priority.LOW) -> str:
    """Ship an order to an address.

    Picks the carrier by priority.

    Args:
        order_id: The order to ship.
        address: Where it goes.
        priority: How fast; high costs more.
            (continued on a second line)
    """
    return f"shipped {order_id} to {address.city} ({priority.value})"


def test_schema_from_signature_and_google_docstring() -> None:
    spec = ship.spec
    assert spec.name == "ship"
    assert spec.description == "Ship an order to an address. Picks the carrier by priority."
    params = spec.parameters
    assert params["type"] == "object"
    assert params["required"] == ["order_id", "address"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["order_id"] == {"type": "integer", "description": "The order to ship."}
    # A pydantic model parameter is inlined (not every model API follows $ref).
    assert props["address"]["type"] == "object"
    assert props["address"]["description"] == "Where it goes."
    assert props["address"]["required"] == ["street", "city"]
    assert "$defs" not in params
    # Enums become enums, defaults are shown, and no pydantic titles are left anywhere.
    assert props["priority"]["enum"] == ["low", "high"]
    assert props["priority"]["default"] == "low"
    assert props["priority"]["description"] == (
        "How fast; high costs more. (continued on a second line)"
    )
    assert "title" not in repr(params)


def test_optional_and_literal_parameters_and_numpy_docstrings() -> None:
    def search(query: str, limit: int | None = None, kind: Literal["doc", "faq"] = "doc") -> list:
        """Search the knowledge base.

        Parameters
        ----------
        query : str
            What to look for.
        limit : int, optional
            At most this many hits.
        """
        return []

    made = Tool(search)
    props = made.parameters["properties"]
    assert made.parameters["required"] == ["query"]
    assert props["query"]["description"] == "What to look for."
    assert props["limit"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["limit"]["description"] == "At most this many hits."
    assert props["kind"]["enum"] == ["doc", "faq"]
    assert made.description == "Search the knowledge base."


def test_sphinx_docstrings_and_overrides() -> None:
    summary, params = parse_docstring("Do it.\n\n:param x: the x\n:param int y: the y\n")
    assert summary == "Do it."
    assert params == {"x": "the x", "y": "the y"}

    @tool(name="renamed", description="Something else.", timeout=1)
    def original(x: int) -> int:
        """Ignored."""
        return x

    assert original.spec.name == "renamed"
    assert original.spec.description == "Something else."
    assert original(3) == 3, "a tool is still callable as the function"


async def test_arguments_are_validated_and_converted() -> None:
    outcome = await ship.run({"order_id": "42", "address": {"street": "1 Main", "city": "Oslo"}})
    assert outcome == outcome.__class__("shipped 42 to Oslo (low)", error=False)

    bad = await ship.run({"order_id": "many", "address": {"street": "x"}, "speed": 3})
    assert bad.error
    assert bad.content.startswith("Error: invalid arguments for tool 'ship': ")
    assert "order_id: Input should be a valid integer" in bad.content
    assert "address.city: Field required" in bad.content
    assert "speed: unexpected argument" in bad.content

    missing = await ship.run({})
    assert missing.error and "order_id: Field required" in missing.content


async def test_an_exception_is_an_observation_not_a_crash() -> None:
    @tool
    def refund(order_id: int) -> str:
        """Refund an order."""
        raise ValueError(f"order {order_id} was already refunded")

    outcome = await refund.run({"order_id": 7})
    assert outcome.error
    assert outcome.content == (
        "Error: tool 'refund' raised ValueError: order 7 was already refunded"
    )


async def test_async_tools_run_on_the_loop_and_sync_tools_in_a_thread() -> None:
    seen: dict[str, str] = {}

    @tool
    async def fetch(url: str) -> dict:
        """Fetch a page."""
        await asyncio.sleep(0)
        seen["async"] = threading.current_thread().name
        return {"url": url, "ok": True}

    @tool
    def parse(text: str) -> str:
        """Parse text."""
        seen["sync"] = threading.current_thread().name
        return text.upper()

    assert fetch.is_async and not parse.is_async
    got = await fetch.run({"url": "http://x"})
    assert got.content == '{"url":"http://x","ok":true}'
    assert (await parse.run({"text": "hi"})).content == "HI"
    assert seen["async"] == threading.current_thread().name
    assert seen["sync"] != threading.current_thread().name


async def test_a_slow_tool_times_out_as_an_observation() -> None:
    @tool(timeout=0.01)
    async def slow() -> str:
        """Never answers in time."""
        await asyncio.Event().wait()
        return "never"

    outcome = await slow.run({})
    assert outcome.error and outcome.content == "Error: tool 'slow' timed out after 0.01s"


async def test_the_context_is_injected_and_left_out_of_the_schema() -> None:
    @tool
    def charge(amount: float, ctx: ExecutionContext) -> str:
        """Charge a card.

        Args:
            amount: Dollars.
        """
        return f"{amount} under {ctx.idempotency_key}"

    assert charge.wants_context
    assert list(charge.parameters["properties"]) == ["amount"]
    ctx = ExecutionContext(
        run_id=RunId("r1"),
        workflow="w",
        step="agent",
        path="agent#1/charge:call_1",
        attempt=1,
        config=WorkflowConfiguration(),
    )
    outcome = await charge.run({"amount": 5}, ctx)
    assert outcome.content == "5.0 under r1:agent#1/charge:call_1"


def test_bad_tools_are_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match=r"\*args cannot be described"):
        Tool(lambda *args: None, name="varargs")
    with pytest.raises(DefinitionError, match="a tool name is 1-64 letters"):
        Tool(lambda x: x, name="has spaces")
    with pytest.raises(DefinitionError, match="a tool is a function"):
        Tool(42)  # type: ignore[arg-type]
