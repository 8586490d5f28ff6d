"""Authorisation over the API: roles gate what a caller may do, approvers and quorum gate
decisions, ``allowed_users`` hides a workflow's runs (404 like an unknown id, in lists and
streams too), and every refusal is on record: in the run's log when it concerns a run, else
in the server's audit log."""

from __future__ import annotations

from typing import Any

from tests.server.fixtures import Api


def refusals(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(type, actor, command or step)`` of the refusals in a log."""
    return [
        (e["type"], e["data"]["actor"], e["data"].get("command") or e["path"])
        for e in events
        if e["type"] in ("refused", "approval_refused")
    ]


async def test_a_viewer_cannot_start_cancel_fork_or_decide(api: Api) -> None:
    ops, victor, root = await api.key("ops"), await api.key("victor"), await api.key("root")
    answer = await api.client.post("/v1/workflows/orders/runs", json={}, headers=victor)
    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "key:victor (victor) may not start orders: it needs the role admin or operator; it "
        "has viewer"
    )
    done = await api.start(ops, "orders")
    await api.settled(ops, done)
    gated = await api.start(ops, "gated")
    await api.settled(ops, gated, "WAITING_APPROVAL")
    attempts = [
        ("post", f"/v1/runs/{gated}/cancel", {}),
        ("post", f"/v1/runs/{gated}/pause", {}),
        ("post", f"/v1/runs/{gated}/signals", {"name": "go"}),
        ("post", f"/v1/runs/{done}/fork", {"from_step": "check"}),
        ("post", f"/v1/runs/{done}/retry", None),
        ("post", f"/v1/runs/{gated}/approvals/review", {"approve": True}),
    ]
    for method, path, body in attempts:
        answer = await api.client.request(method, path, json=body, headers=victor)
        assert answer.status_code == 403, f"{path}: {answer.text}"
        assert "victor" in answer.json()["detail"]
    # it may read them, though
    assert (await api.client.get(f"/v1/runs/{gated}", headers=victor)).status_code == 200
    assert refusals(await api.events(root, gated)) == [
        ("refused", "victor", "cancel"),
        ("refused", "victor", "pause"),
        ("refused", "victor", "signal"),
        ("approval_refused", "victor", "review"),
    ]
    assert refusals(await api.events(root, done)) == [
        ("refused", "victor", "fork"),
        ("refused", "victor", "re-drive"),
    ]
    await api.server.audit.flush()
    log = await api.server.tables.audit_log()
    assert [(e.kind, e.identity) for e in log] == [("start_refused", "key:victor")]
    assert (await api.run(root, gated))["status"] == "WAITING_APPROVAL"


async def test_an_approver_of_another_role_cannot_decide_and_quorum_counts_people(
    api: Api,
) -> None:
    ops, maya, olivia = await api.key("ops"), await api.key("maya"), await api.key("olivia", [])
    run_id = await api.start(ops, "gated")
    await api.settled(ops, run_id, "WAITING_APPROVAL")
    answer = await api.client.post(
        f"/v1/runs/{run_id}/approvals/review", json={"approve": True}, headers=maya
    )
    assert answer.status_code == 403
    assert "maya may not decide 'review': it needs one of compliance_officer" in answer.text
    # an identity mapped to no configured user decides nothing, whatever its key's roles
    stranger = await api.key("stranger", ["admin"])
    answer = await api.client.post(
        f"/v1/runs/{run_id}/approvals/review", json={"approve": True}, headers=stranger
    )
    assert answer.status_code == 403 and "unknown user 'key:stranger'" in answer.text
    answer = await api.client.post(
        f"/v1/runs/{run_id}/approvals/review",
        json={"approve": False, "comment": "no"},
        headers=olivia,
    )
    assert answer.status_code == 200, answer.text
    again = await api.client.post(
        f"/v1/runs/{run_id}/approvals/review", json={"approve": True}, headers=olivia
    )
    assert again.status_code == 409
    events = await api.events(ops, run_id)
    assert refusals(events) == [
        ("approval_refused", "maya", "review"),
        ("approval_refused", "key:stranger", "review"),
        ("approval_refused", "olivia", "review"),
    ]
    assert (await api.settled(ops, run_id))["status"] == "FAILED"


async def test_another_workflows_run_is_not_found_anywhere(api: Api) -> None:
    fin, ops, root = await api.key("fin"), await api.key("ops"), await api.key("root")
    hidden = await api.start(fin, "secret")
    await api.settled(fin, hidden)
    visible = await api.start(ops, "orders")
    unknown = await api.client.get("/v1/runs/0123456789abcdef0123456789abcdef", headers=ops)
    for path in ("", "/events", "/state", "/stream", "/audit", "/approvals/x"):
        answer = await api.client.get(f"/v1/runs/{hidden}{path}", headers=ops)
        assert answer.status_code == 404, f"{path}: {answer.text}"
        assert answer.json()["detail"] == f"no run with id {hidden!r}"
    assert unknown.json()["detail"].startswith("no run with id")
    for path, body in (("/cancel", {}), ("/fork", {"from_step": "hidden"}), ("/retry", None)):
        answer = await api.client.post(f"/v1/runs/{hidden}{path}", json=body, headers=ops)
        assert answer.status_code == 404, path
    listed = (await api.client.get("/v1/runs", headers=ops)).json()["runs"]
    assert [r["run_id"] for r in listed] == [visible]
    by_name = await api.client.get("/v1/runs", params={"workflow": "secret"}, headers=ops)
    assert by_name.json()["runs"] == []
    assert [
        r["run_id"] for r in (await api.client.get("/v1/runs", headers=fin)).json()["runs"]
    ] == [
        visible,
        hidden,
    ]
    assert (await api.client.get(f"/v1/runs/{hidden}", headers=root)).status_code == 200
    assert refusals(await api.events(root, hidden)) == []  # probes leave the run's log alone
    await api.server.audit.flush()
    log = await api.server.tables.audit_log(limit=100)
    assert {e.kind for e in log} == {"hidden_run"}
    assert all(e.identity == "key:ops" for e in log) and len(log) == 9


async def test_allowed_users_are_applied_by_the_engine_to_admins_too(api: Api) -> None:
    fin, root = await api.key("fin"), await api.key("root")
    answer = await api.client.post("/v1/workflows/secret/runs", json={}, headers=root)
    assert answer.status_code == 403
    assert "root may not start secret: it needs one of finance" in answer.json()["detail"]
    run_id = await api.start(fin, "secret")
    await api.settled(fin, run_id)
    answer = await api.client.post(f"/v1/runs/{run_id}/fork", json={"from_step": "hidden"},
                                   headers=root)  # fmt: skip
    assert answer.status_code == 403
    assert refusals(await api.events(root, run_id)) == [("refused", "root", "fork")]


async def test_an_unmapped_identity_acts_under_its_proven_name(api: Api) -> None:
    stranger = await api.key("stranger", ["operator"])
    answer = await api.client.post("/v1/workflows/orders/runs", json={}, headers=stranger)
    assert answer.status_code == 403
    assert "key:stranger may not start orders: unknown user 'key:stranger'" in answer.text


async def test_the_server_audit_log_is_for_admins(api: Api) -> None:
    ops, root = await api.key("ops"), await api.key("root")
    await api.client.get("/v1/runs", headers={"Authorization": "Bearer cdz_nope"})
    assert (await api.client.get("/v1/audit/log", headers=ops)).status_code == 403
    entries = (await api.client.get("/v1/audit/log", headers=root)).json()["entries"]
    assert [e["kind"] for e in entries] == ["authentication_failed"]
    assert entries[0]["path"] == "/v1/runs" and "malformed API key" in entries[0]["reason"]
