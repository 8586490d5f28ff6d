"""The design brief's three step lists, saved verbatim in examples/brief/, with the handler
modules beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cadenza import ApprovalDenied, Directory, Engine, MemoryStore, WorkflowStatus
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


PEOPLE = Directory(
    {
        "olivia": frozenset({"compliance_officer"}),
        "mo": frozenset({"content_moderator"}),
        "victor": frozenset({"viewer"}),
    }
)


async def test_a_large_transaction_waits_for_compliance_and_completes_when_approved() -> None:
    workflow, _ = load_target(str(BRIEF / "financial.json"), handler_modules=["financial_handlers"])
    async with Engine(MemoryStore()) as engine:
        waiting = await engine.run(workflow, {"amount": 25000, "account": "ACC-1"})
        assert waiting.status is WorkflowStatus.WAITING_APPROVAL
        (pending,) = await engine.pending_approvals()
        assert pending["step"] == "compliance_review"
        assert pending["approvers"] == ["compliance_officer"]
        with pytest.raises(ApprovalDenied, match="victor may not decide 'compliance_review'"):
            await engine.decide(
                waiting.run_id, "compliance_review", actor="victor", approve=True, directory=PEOPLE
            )
        done = await engine.decide(
            waiting.run_id,
            "compliance_review",
            actor="olivia",
            approve=True,
            comment="ok",
            directory=PEOPLE,
        )
        events = await engine.store.read_events(waiting.run_id)
    assert done.ok, done.error
    assert done.state["receipt"] == "Receipt: 25000.00 from ACC-1 settled."
    refused = [e for e in events if e.type == "approval_refused"]
    assert [e.data["actor"] for e in refused] == ["victor"]


async def test_a_small_transaction_needs_no_approval() -> None:
    workflow, _ = load_target(str(BRIEF / "financial.json"), handler_modules=["financial_handlers"])
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(workflow, {"amount": 120, "account": "ACC-2"})
        events = await engine.store.read_events(result.run_id)
    assert result.ok
    assert "fraud_detection" in {e.path for e in events if e.type == "step_skipped"}
    assert "compliance_review" in {e.path for e in events if e.type == "step_skipped"}


async def test_moderation_waits_for_a_moderator_and_a_rejection_fails_the_run() -> None:
    workflow, _ = load_target(
        str(BRIEF / "moderation.json"), handler_modules=["moderation_handlers"]
    )
    async with Stub(Reply(200, "{}")) as notifications:
        workflow.configure(
            webhook_endpoints={"notify_user": notifications.url},
            webhook_allow=[notifications.url],  # a local stand-in: allow-listed
        )
        async with Engine(MemoryStore()) as engine:
            waiting = await engine.run(workflow, {"content": "Election results are in: http://x"})
            assert waiting.status is WorkflowStatus.WAITING_APPROVAL
            assert waiting.state["escalated"] is True and waiting.state["confidence"] == 0.6
            rejected = await engine.decide(
                waiting.run_id,
                "human_review",
                actor="mo",
                approve=False,
                comment="misleading",
                directory=PEOPLE,
            )
        await aclose_clients()
    assert rejected.status is WorkflowStatus.FAILED
    assert "rejected by mo (misleading)" in (rejected.error or "")
    assert notifications.requests == []


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
        workflow.configure(
            webhook_endpoints={"notify_warehouse": f"{warehouse.url}/ship"},
            webhook_allow=[warehouse.url],  # a local stand-in: allow-listed, as an operator would
        )
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


EXAMPLES = BRIEF.parent


async def test_the_order_processing_yaml_runs_against_a_receiver() -> None:
    workflow, _ = load_target(str(EXAMPLES / "order_processing.yaml"))
    order = json.loads((EXAMPLES / "order.json").read_text())
    async with Stub(Reply(200, '{"accepted": true}')) as warehouse:
        workflow.configure(
            webhook_endpoints={"notify_warehouse": f"{warehouse.url}/ship"},
            webhook_allow=[warehouse.url],  # a local stand-in: allow-listed, as an operator would
        )
        async with Engine(MemoryStore()) as engine:
            result = await engine.run(workflow, order)
        await aclose_clients()
    assert result.ok, result.error
    assert result.state["warehouse_response"] == {"accepted": True}
    assert result.state["label"] == "LBL-A-1001-EXPRESS"
    assert json.loads(warehouse.requests[0].body)["shipping_method"] == "express"


async def test_content_moderation_yaml_publishes_clean_content_without_review() -> None:
    workflow, _ = load_target(str(EXAMPLES / "content_moderation.yaml"))
    async with Stub(Reply(200, "{}")) as notifications:
        workflow.configure(
            webhook_endpoints={"notify_user": notifications.url},
            webhook_allow=[notifications.url],  # a local stand-in: allow-listed
        )
        async with Engine(MemoryStore()) as engine:
            clean = await engine.run(workflow, {"content": "Lovely weather today"})
            flagged = await engine.run(workflow, {"content": "Election results: http://x"})
            assert flagged.status is WorkflowStatus.WAITING_APPROVAL
            people = Directory({"maya": frozenset({"content_moderator"})})
            done = await engine.decide(
                flagged.run_id, "human_review", actor="maya", approve=True, directory=people
            )
        await aclose_clients()
    assert clean.ok and clean.state["decision"] == "published"
    assert done.ok and done.state["decision"] == "published"
    assert [json.loads(r.body) for r in notifications.requests] == [
        {"decision": "published"},
        {"decision": "published"},
    ]
