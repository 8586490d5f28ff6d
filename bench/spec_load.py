"""How long loading and compiling a large YAML workflow takes: a 1,000-step spec (sequential
steps, guards, a parallel block, routes) read from disk, validated, compiled to the IR.

    python bench/spec_load.py [--steps 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from cadenza import HandlerRegistry
from cadenza.graph.spec_compile import load_workflow_file


def document(steps: int) -> str:
    lines = ["name: big", "state:", "  n: int", "  log: {type: list, reducer: append}", "steps:"]
    for i in range(steps):
        if i % 50 == 10:
            lines.append(
                f"  - {{type: CONDITIONAL, name: s{i}, handler: step, conditions: ['n > {i}']}}"
            )
        elif i % 50 == 20:
            lines.append(f"  - {{type: PARALLEL, name: s{i}, branches: [step, step2]}}")
        else:
            lines.append(f"  - {{name: s{i}, handler: step, timeout: 30}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    registry = HandlerRegistry()
    registry.register("step", lambda state: {"n": state.get("n", 0) + 1})
    registry.register("step2", lambda state: {"log": ["x"]})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(document(args.steps))
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            workflow = load_workflow_file(path, registry=registry)
            ir = workflow.compile()
            best = min(best, time.perf_counter() - started)
        assert len(ir.graph.steps) == args.steps, "every step compiled"
    row = {"scenario": "spec_load", "steps": args.steps, "wall_s": round(best, 4)}
    if args.json:
        print(json.dumps(row))
    else:
        ms = best * 1000
        print(f"load + validate + compile {args.steps} steps: {ms:.1f} ms (best of {args.repeat})")


if __name__ == "__main__":
    main()
