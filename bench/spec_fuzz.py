"""How long and how much memory loading a hostile workflow file takes, at the worst: the
fuzz corpus of ``tests/graph/spec_mutations.py`` (the examples mutated at the structure,
text and byte level) at a larger size than the test runs, plus the issue's hostile files,
each loaded as ``cadenza validate --no-import`` loads it.

    python bench/spec_fuzz.py [--documents 20000] [--seed 0] [--json]

Time is measured without tracemalloc (it slows Python down several times); memory is the
tracemalloc peak of a second pass over the same documents, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.graph.spec_mutations import HOSTILE, check_document, mutated_document  # noqa: E402

Document = tuple[str, bytes, str]  # (label, content, suffix)


def corpus(documents: int, seed: int) -> Iterator[Document]:
    for i in range(documents):
        data, suffix, mutations = mutated_document(random.Random(seed + i))
        yield f"seed {seed + i}: {'+'.join(mutations)}", data, suffix
    for name, (data, suffix, _, _) in HOSTILE.items():
        yield f"hostile: {name}", data, suffix


def timed(
    documents: Iterator[Document], folder: Path
) -> tuple[list[str], list[float], Counter[str]]:
    """The labels of the documents, seconds per document, and the outcomes (``ok``,
    ``error``, or a failure named)."""
    labels: list[str] = []
    times: list[float] = []
    outcomes: Counter[str] = Counter()
    for label, data, suffix in documents:
        labels.append(label)
        path = folder / f"wf{suffix}"
        path.write_bytes(data)
        started = time.perf_counter()
        try:
            outcomes[check_document(path)] += 1
        except Exception as exc:  # a bug: counted and named, the run goes on
            outcomes[f"FAILED {type(exc).__name__}: {exc}"[:200]] += 1
        times.append(time.perf_counter() - started)
    return labels, times, outcomes


def traced(documents: Iterator[Document], folder: Path) -> list[float]:
    """Bytes allocated at the peak of each document's load (tracing only the load, so that
    making the corpus is neither counted nor slowed)."""
    peaks: list[float] = []
    for _, data, suffix in documents:
        path = folder / f"wf{suffix}"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            with contextlib.suppress(Exception):  # failures are counted by the timed pass
                check_document(path)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # The corpus is made again for each pass rather than kept: some documents are 1 MiB.
    with tempfile.TemporaryDirectory() as tmp:
        labels, times, outcomes = timed(corpus(args.documents, args.seed), Path(tmp))
        peaks = traced(corpus(args.documents, args.seed), Path(tmp))
    slowest = max(range(len(times)), key=times.__getitem__)
    largest = max(range(len(peaks)), key=peaks.__getitem__)
    failures = {k: v for k, v in outcomes.items() if k.startswith("FAILED")}
    row = {
        "scenario": "spec_fuzz",
        "documents": len(labels),
        "loaded": outcomes["ok"],
        "refused": outcomes["error"],
        "failures": sum(failures.values()),
        "max_s": round(times[slowest], 4),
        "p99_s": round(statistics.quantiles(times, n=100)[98], 4),
        "median_s": round(statistics.median(times), 5),
        "slowest": labels[slowest],
        "max_traced_mib": round(peaks[largest] / 2**20, 2),
        "largest": labels[largest],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(row))
        return
    print(f"{row['documents']:,} documents: {row['loaded']:,} loaded, {row['refused']:,} refused,")
    print(f"  {row['failures']} failures (an exception other than SpecError, or a bad message)")
    print(f"time per document: max {row['max_s'] * 1000:.1f} ms ({row['slowest']}),")
    print(f"  p99 {row['p99_s'] * 1000:.1f} ms, median {row['median_s'] * 1000:.2f} ms")
    print(f"memory per document (tracemalloc peak): max {row['max_traced_mib']} MiB")
    print(f"  ({row['largest']}); process peak RSS {row['peak_rss_mib']} MiB")
    for failure, count in failures.items():
        print(f"  {count} x {failure}")


if __name__ == "__main__":
    main()
