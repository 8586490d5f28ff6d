"""A WEBHOOK step with ``callback=``: the call is recorded as its own step instance, the run
then waits holding nothing, and the callback's signal completes the step with its body (the
call is not made again when the run resumes)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest
from tests.http_stub import Stub

from cadenza import Engine, Workflow
from cadenza.core.errors import DefinitionError
from cadenza.core.status import WorkflowStatus
from cadenza.graph.spec_compile import load_workflow_file
from cadenza.steps.webhook import aclose_clients, callback_signal

SECRET = "whsec_" + base64.b64encode(b"a callback secret, 32 bytes long").decode()


class S(TypedDict, total=False):
    order: str
    answer: Any
    shipped: Any


@pytest.fixture(autouse=True)
async def _webhooks(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    yield
    await aclose_clients()


def shipping(url: str) -> Workflow:
    wf = Workflow("shipping", state=S, config={"webhook_allow": [url]})
    wf.webhook("ship", endpoint=f"{url}/ship", output="answer", secret_env="HOOK_SECRET",
               callback="shipped")  # fmt: skip
    return wf


async def test_the_step_waits_for_its_callback(engine: Engine) -> None:
    async with Stub() as stub:
        wf = shipping(stub.url)
        run_id = await engine.start(wf, {"order": "A-1"})
        waiting = await engine.wait(run_id)
        assert waiting.status is WorkflowStatus.RUNNING
        assert len(stub.requests) == 1
        events = await engine.store.read_events(run_id)
        assert [e.path for e in events if e.type == "step_completed"] == ["ship/call"]
        done = await engine.signal(run_id, callback_signal("ship"), {"tracking": "Z"})
        assert done.status is WorkflowStatus.COMPLETED
        assert done.state["shipped"] == {"tracking": "Z"}
        assert len(stub.requests) == 1  # resumed without calling again


def test_a_callback_needs_a_secret_and_a_state_key() -> None:
    wf = Workflow("w", state=S)
    with pytest.raises(DefinitionError, match="needs secret_env"):
        wf.webhook("a", endpoint="https://x.example/a", callback="shipped")
    with pytest.raises(DefinitionError, match="state key to store the callback"):
        wf.webhook("b", endpoint="https://x.example/b", secret_env="S", callback="")


def test_yaml_steps_take_a_callback(tmp_path: Any) -> None:
    text = (
        "name: y\nstate: {shipped: dict}\nsteps:\n"
        "  - {type: WEBHOOK, name: ship, endpoint: 'https://x.example/s', secret_env: S,"
        " callback: shipped}\n"
    )
    (tmp_path / "y.yaml").write_text(text)
    ir = load_workflow_file(tmp_path / "y.yaml").compile()
    assert ir.graph.steps["ship"].options["callback"] == "shipped"
