"""The design brief's three step lists, saved verbatim in examples/brief/, with the handler
modules beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza import Engine, MemoryStore, SpecError
from cadenza.graph.spec_load import read_spec
from cadenza.runtime.loader import load_target
from cadenza.steps.webhook import aclose_clients
from tests.http_stub import Reply, Stub

BRIEF = Path(__file__).parents[1] / "examples" / "brief"


@pytest.mark.parametrize("name", ["order", "moderation", "financial"])
def test_the_brief_step_lists_load_as_written(name: str) -> None:
    spec, _ = read_spec(BRIEF / f"{name}.json")
    raw = json.loads((BRIEF / f"{name}.json").read_text())
    assert [s.name for s in spec.steps] == [s["name"] for s in raw]
    assert [s.type.value for s in spec.steps] == [s["type"] for s in raw]


@pytest.mark.parametrize("name", ["moderation", "financial"])
def test_approval_steps_wait_for_their_executor(name: str) -> None:
    with pytest.raises(SpecError) as info:
        load_target(str(BRIEF / f"{name}.json"), handler_modules=[f"{name}_handlers"])
    (line,) = info.value.lines()
    assert line.endswith(
        ":4:5: $.steps[2]: step kind HUMAN_APPROVAL is not available yet in this version of Cadenza"
    )


@pytest.mark.parametrize(
    ("order", "method", "label"),
    [
        ({"premium_customer": True, "expedited_shipping": False}, "express", "LBL-A-7-EXPRESS"),
        ({"premium_customer": False, "expedited_shipping": False}, "standard", "LBL-A-7-STANDARD"),
    ],
)
async def test_the_order_workflow_runs(order: dict[str, bool], method: str, label: str) -> None:
    workflow, _ = load_target(str(BRIEF / "order.json"), handler_modules=["order_handlers"])
    items = [
        {"sku": "mug", "quantity": 2, "price": 9.5},
        {"sku": "tee", "quantity": 1, "price": 20},
    ]
    async with Stub(Reply(200, '{"accepted": true}')) as warehouse:
        workflow.configure(webhook_endpoints={"notify_warehouse": f"{warehouse.url}/ship"})
        async with Engine(MemoryStore()) as engine:
            result = await engine.run(workflow, {"order_id": "A-7", "items": items, **order})
        await aclose_clients()
    assert result.ok, result.error
    state = result.state
    assert state["total"] == 39.0
    assert state["payment"]["status"] == "captured"
    assert state["inventory"]["reserved"] == ["mug", "tee"]
    assert state.get("shipping_method", "standard") == method
    assert state["label"] == label
    assert state["confirmation"].startswith("Order A-7 confirmed: 2 item(s), 39.00 charged")
    (request,) = warehouse.requests
    assert request.path == "/ship"
    sent = json.loads(request.body)
    assert sent["label"] == label and sent["order_id"] == "A-7"
