"""How long listing pending approvals takes with many runs waiting: N runs each waiting at a
HUMAN_APPROVAL step in a SQLite store, then ``engine.pending_approvals()`` (every one;
``cadenza approvals list`` reads the same table), best of K.

    python bench/approvals.py [--runs 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from cadenza import Engine, SQLiteStore, Workflow, WorkflowStatus


def prepare(state: dict[str, Any]) -> dict[str, Any]:
    return {"prepared": True}


async def main(runs: int, repeat: int, as_json: bool) -> None:
    wf = Workflow("bench_approvals")
    wf.task(prepare, inline=True)
    wf.approval("review", approvers=["compliance_officer"], show=["amount"])
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "approvals.db"
        async with Engine(SQLiteStore(db, fast=True)) as engine:
            results = await asyncio.gather(*(engine.run(wf, {"amount": i}) for i in range(runs)))
            assert all(r.status is WorkflowStatus.WAITING_APPROVAL for r in results)
        best = float("inf")
        for _ in range(repeat):
            async with Engine(SQLiteStore(db)) as engine:
                started = time.perf_counter()
                pending = await engine.pending_approvals()
                best = min(best, time.perf_counter() - started)
            assert len(pending) == runs, "every waiting approval listed"
    if as_json:
        print(json.dumps({"scenario": "approvals_list", "runs": runs, "wall_s": round(best, 4)}))
    else:
        print(f"list {runs} pending approvals: {best * 1000:.1f} ms (best of {repeat})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.repeat, args.json))
