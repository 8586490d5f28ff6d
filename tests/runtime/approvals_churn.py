"""A process that keeps requesting, deciding and cancelling approvals until it is killed:
the crash test's first process (``python approvals_churn.py STORE``, STORE a SQLite path or
``postgresql://...#schema``). It prints ``ready`` once its first request is stored, so that
the test kills it in the middle of its work rather than during interpreter start-up."""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import TypedDict

from cadenza import CadenzaError, Directory, Engine, SQLiteStore, Workflow
from cadenza.store.base import Store

PEOPLE = Directory(
    {
        "olivia": frozenset({"officer"}),
        "omar": frozenset({"officer"}),
        "lea": frozenset({"lead"}),
    }
)


class S(TypedDict, total=False):
    n: int


def prepare(state: S) -> S:
    return {}


def workflow() -> Workflow:
    """Two approvals in a row (the first by two officers), so that runs wait, wait again and
    finish while the process is killed."""
    wf = Workflow("churn", state=S)
    wf.task(prepare)
    wf.approval("review", approvers=["officer"], quorum=2, show=["n"])
    wf.approval("confirm", approvers=["lead"])
    return wf


def open_store(where: str) -> Store:
    if where.startswith("postgresql://"):
        from cadenza.store.postgres import PostgresStore

        dsn, _, schema = where.partition("#")
        return PostgresStore(dsn, schema=schema or None)
    return SQLiteStore(where)


async def churn(where: str) -> None:
    wf = workflow()
    async with Engine(open_store(where), directory=PEOPLE) as engine:
        engine.register(wf)
        actors = itertools.cycle(["olivia", "omar", "lea", "olivia", "lea", "omar"])
        for n in itertools.count():
            await asyncio.gather(*(engine.run(wf, {"n": n * 4 + i}) for i in range(4)))
            if n == 0:
                print("ready", flush=True)
            pending = await engine.pending_approvals(limit=12)
            decisions = []
            for i, request in enumerate(pending):
                actor = next(actors)
                if i % 7 == 6:
                    decisions.append(engine.cancel(request["run_id"]))
                else:
                    decisions.append(
                        engine.decide(
                            request["run_id"], request["step"], actor=actor, approve=i % 9 != 8
                        )
                    )
            for outcome in await asyncio.gather(*decisions, return_exceptions=True):
                if isinstance(outcome, BaseException) and not isinstance(outcome, CadenzaError):
                    raise outcome


if __name__ == "__main__":
    asyncio.run(churn(sys.argv[1]))
