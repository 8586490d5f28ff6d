"""Identities are configured users only, on random directories: user and role names are drawn
from one small pool (so they collide with each other and with the names actors give), and

- a directory where a name is both a user and a role is refused;
- a decision (or a guarded command) is accepted only for a configured user named in the
  allowed list or holding a role in it; a role's name, or any other name, is refused;
- through ``engine.decide``, every attempt either becomes a decision or an ``approval_refused``
  event, a quorum counts distinct configured users, and the run ends as the decisions say."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza import (
    ApprovalDenied,
    CadenzaError,
    Directory,
    Engine,
    MemoryStore,
    Workflow,
    WorkflowStatus,
)
from cadenza.core.events import EventType

POOL = ["ann", "bob", "olivia", "operator", "compliance_officer", "viewer", "lead"]
names = st.sampled_from(POOL)
actors = names | st.text(max_size=4)  # the pool's names (users, roles, both, neither) or any


@st.composite
def directories(draw: st.DrawFn, min_users: int = 0) -> dict[str, frozenset[str]]:
    """Users and their roles, both named from ``POOL``: sometimes a name is both."""
    users = draw(st.sets(names, min_size=min_users, max_size=4))
    return {u: frozenset(draw(st.sets(names, max_size=4))) for u in sorted(users)}


def unambiguous(users: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """``users`` with every role named like a user dropped (a directory that loads)."""
    return {u: roles - users.keys() for u, roles in users.items()}


def allowed_for(users: dict[str, frozenset[str]], actor: str, allowed: list[str]) -> bool:
    """The rule, stated apart from the code: a configured user, named or holding a role."""
    return actor in users and (actor in allowed or any(r in allowed for r in users[actor]))


# -- Directory ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(directories())
def test_a_name_that_is_both_user_and_role_is_refused(users: dict[str, frozenset[str]]) -> None:
    roles = frozenset().union(*users.values())
    if users.keys() & roles:
        with pytest.raises(CadenzaError, match="is both a user and a role"):
            Directory(users)
    else:
        assert Directory(users).users == users


@settings(max_examples=300, deadline=None)
@given(directories(), actors, st.lists(names, max_size=3))
def test_only_configured_users_with_an_allowed_name_or_role_are_accepted(
    drawn: dict[str, frozenset[str]], actor: str, allowed: list[str]
) -> None:
    users = unambiguous(drawn)
    people = Directory(users)
    expected = allowed_for(users, actor, allowed)
    assert people.matches(actor, allowed) is expected
    if expected:
        people.check(actor, allowed, "decide")
        people.authorize(actor, allowed, "cancel")
    else:
        with pytest.raises(ApprovalDenied):
            people.check(actor, allowed, "decide")
        if allowed:
            with pytest.raises(ApprovalDenied):
                people.authorize(actor, allowed, "cancel")
    if actor not in users and any(actor in roles for roles in users.values()):
        assert not people.matches(actor, [actor]), "a role's name is no one"
    # the names listing what a user may decide looks up: one of them listed is a match
    assert bool(set(people.names(actor)) & set(allowed)) is expected


@settings(max_examples=200, deadline=None)
@given(directories(), st.none() | actors)
def test_where_nothing_is_guarded_a_name_given_must_be_a_configured_user(
    drawn: dict[str, frozenset[str]], actor: str | None
) -> None:
    users = unambiguous(drawn)
    people = Directory(users)
    if not actor or not users or actor in users:
        people.authorize(actor, [], "cancel")
    else:
        with pytest.raises(ApprovalDenied, match="unknown user"):
            people.authorize(actor, [], "cancel")


# -- through the engine ---------------------------------------------------------------------------


class S(TypedDict, total=False):
    done: bool


def review(approvers: list[str], quorum: int) -> Workflow:
    wf = Workflow("review", state=S)
    wf.approval("review", approvers=approvers, quorum=quorum)
    wf.task(lambda s: {"done": True}, name="pay")
    return wf


async def scenario(
    users: dict[str, frozenset[str]],
    approvers: list[str],
    quorum: int,
    attempts: list[tuple[str, bool]],
) -> None:
    people = Directory(users)
    accepted: list[tuple[str, bool]] = []
    refused = 0
    async with Engine(MemoryStore(), directory=people) as engine:
        run = await engine.run(review(approvers, quorum), {})
        for actor, approve in attempts:
            waiting = not any(not a for _, a in accepted) and len(accepted) < quorum
            may = (
                waiting
                and allowed_for(users, actor, approvers)
                and actor not in {a for a, _ in accepted}
            )
            try:
                await engine.decide(run.run_id, "review", actor=actor, approve=approve)
            except ApprovalDenied:
                assert not allowed_for(users, actor, approvers)
                refused += 1
            except CadenzaError:
                assert not may
                refused += 1
            else:
                assert may, f"{actor!r} was let decide"
                accepted.append((actor, approve))
        events = await engine.store.read_events(run.run_id)
        record = await engine.store.get_run(run.run_id)
    decisions = [e.data["actor"] for e in events if e.type is EventType.APPROVAL_DECISION]
    assert decisions == [a for a, _ in accepted]
    assert len(set(decisions)) == len(decisions) and set(decisions) <= users.keys()
    assert len([e for e in events if e.type is EventType.APPROVAL_REFUSED]) == refused
    if any(not approve for _, approve in accepted):
        assert record.status is WorkflowStatus.FAILED
    elif len(accepted) >= quorum:
        assert record.status is WorkflowStatus.COMPLETED
        (done,) = [e for e in events if e.type is EventType.STEP_COMPLETED and e.path == "review"]
        approvers_seen = done.data["approved_by"].split(", ")
        assert approvers_seen == decisions and len(set(approvers_seen)) == quorum
    else:
        assert record.status is WorkflowStatus.WAITING_APPROVAL


#: Mostly approvals, so that quorums are reached too; a rejection now and then.
verdicts = st.sampled_from([True, True, True, False])


@settings(max_examples=40, deadline=None)
@given(directories(min_users=1), st.integers(min_value=1, max_value=3), st.data())
def test_decisions_through_the_engine_follow_the_rule(
    drawn: dict[str, frozenset[str]], quorum: int, data: st.DataObject
) -> None:
    users = unambiguous(drawn)
    # Approvers and actors mostly among the directory's names, so that decisions are also
    # accepted and quorums reached; any name of the pool (or none of it) otherwise.
    known = sorted(users.keys() | frozenset().union(*users.values()))
    approvers = data.draw(st.lists(st.sampled_from(known) | names, min_size=1, max_size=3))
    who = st.sampled_from(sorted(users)) | st.sampled_from(known) | actors
    attempts = data.draw(st.lists(st.tuples(who, verdicts), max_size=6))
    asyncio.run(scenario(users, approvers, quorum, attempts))
