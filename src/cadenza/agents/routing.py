"""Routers for the CONDITIONAL step that read text from the state: :class:`SemanticRouter`
picks the route whose descriptions are closest in meaning (embedding cosine similarity),
:class:`KeywordRouter` the first route whose keywords or patterns occur.

Both are plain callables, ``router(state) -> route name | None``, so either goes straight into
``wf.conditional("route", routes=router.targets, router=router)`` or into a task that stores
the category. Both are cheap to build: the semantic router embeds its descriptions on first
use, and the model loads then (see :mod:`cadenza.agents.embeddings`).
"""

from __future__ import annotations

import asyncio
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from cadenza.agents.embeddings import (
    Embedder,
    MiniLMEmbedder,
    Vectors,
    embeddings_available,
    numpy,
)
from cadenza.core.errors import CadenzaError, DefinitionError

TextSource = str | Callable[[Mapping[str, Any]], str]
Pattern = str | re.Pattern[str]


class RoutingError(CadenzaError):
    """The text to route could not be read from the state, or is not text."""


class _TextRouter(ABC):
    """What both routers share: reading the text from the state, the default, the targets."""

    def __init__(self, names: Sequence[str], text: TextSource, default: str | None) -> None:
        kind = type(self).__name__
        if isinstance(text, str):
            if not text:
                raise DefinitionError("text is a state key or a function", path=f"{kind}.text")
        elif not callable(text):
            raise DefinitionError(
                f"text is a state key or a function of the state, got {text!r}",
                path=f"{kind}.text",
            )
        if default is not None and (not isinstance(default, str) or not default):
            raise DefinitionError(
                f"default is a route name or None, got {default!r}", path=f"{kind}.default"
            )
        self._text = text
        self.default = default
        self.routes: tuple[str, ...] = tuple(names)
        extra = () if default is None or default in self.routes else (default,)
        #: Every name the router can return: pass it as ``wf.conditional(routes=...)``.
        self.targets: tuple[str, ...] = (*self.routes, *extra)

    def __call__(self, state: Mapping[str, Any]) -> str | None:
        """The route for the text in ``state``, or ``default`` when none fits."""
        return self.route(self.text_of(state))

    @abstractmethod
    def route(self, text: str) -> str | None:
        """The route for ``text`` itself, or ``default`` when none fits."""

    def text_of(self, state: Mapping[str, Any]) -> str:
        """The text this router reads from ``state``; a clear error when it cannot."""
        kind = type(self).__name__
        if isinstance(self._text, str):
            if self._text not in state:
                known = ", ".join(sorted(map(str, state))) or "none"
                raise RoutingError(
                    f"{kind} reads state[{self._text!r}], which is not set (state keys: {known})"
                )
            value, where = state[self._text], f"state[{self._text!r}]"
        else:
            value, where = self._text(state), f"text({getattr(self._text, '__name__', '...')})"
        if not isinstance(value, str):
            raise RoutingError(f"{kind}: {where} is {type(value).__name__}, expected text")
        return value

    @staticmethod
    def _check_text(text: object) -> str:
        if not isinstance(text, str):
            raise TypeError(f"expected the text to route, got {type(text).__name__}")
        return text


def _phrases(value: object, path: str, *, allow_patterns: bool) -> list[Any]:
    """One description, keyword or pattern, or a list of them, checked."""
    single = (str, re.Pattern) if allow_patterns else (str,)
    items = [value] if isinstance(value, single) else value
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise DefinitionError(f"expected text or a list of texts, got {value!r}", path=path)
    for i, item in enumerate(items):
        if isinstance(item, str) and item.strip():
            continue
        if allow_patterns and isinstance(item, re.Pattern):
            continue
        raise DefinitionError(f"expected non-empty text, got {item!r}", path=f"{path}[{i}]")
    return list(items)


def _route_names(routes: object, kind: str, what: str) -> list[str]:
    if not isinstance(routes, Mapping) or not routes:
        raise DefinitionError(
            f"give {what} as {{route name: ...}} with at least one route", path=f"{kind}.{what}"
        )
    for name in routes:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"route names are non-empty text, got {name!r}", path=kind)
    return list(routes)


class SemanticRouter(_TextRouter):
    """Routes to the route whose descriptions are most similar in meaning to the text.

    ``routes`` maps each route name to one or more descriptions or example utterances; a
    route's score is the best cosine similarity between the text and any of its descriptions.
    Below ``threshold`` (and for blank text) the router returns ``default``. The descriptions
    are embedded once, on first use or :meth:`warm`; ``embedder`` defaults to the packaged
    MiniLM model."""

    def __init__(
        self,
        routes: Mapping[str, str | Sequence[str]],
        *,
        text: TextSource,
        threshold: float | None = None,
        default: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        names = _route_names(routes, "SemanticRouter", "routes")
        super().__init__(names, text, default)
        self._descriptions: list[str] = []
        self._starts: list[int] = []
        for name in names:
            where = f"SemanticRouter.routes[{name!r}]"
            found = _phrases(routes[name], where, allow_patterns=False)
            if not found:
                raise DefinitionError("a route needs at least one description", path=where)
            self._starts.append(len(self._descriptions))
            self._descriptions.extend(found)
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not -1.0 <= threshold <= 1.0
        ):
            raise DefinitionError(
                f"threshold is a cosine similarity between -1 and 1, got {threshold!r}",
                path="SemanticRouter.threshold",
            )
        if embedder is not None and not isinstance(embedder, Embedder):
            raise DefinitionError(
                f"embedder must have an embed(texts) method, got {embedder!r}",
                path="SemanticRouter.embedder",
            )
        self.threshold = None if threshold is None else float(threshold)
        self._embedder = embedder
        self._matrix: Vectors | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = MiniLMEmbedder()
        return self._embedder

    def warm(self) -> None:
        """Load the model and embed the descriptions now, so the first routing is fast."""
        self._route_vectors()

    def route(self, text: str) -> str | None:
        if not self._check_text(text).strip():
            return self.default
        best, score = next(iter(self.explain(text).items()))
        if self.threshold is not None and score < self.threshold:
            return self.default
        return best

    def explain(self, text: str) -> dict[str, float]:
        """Each route's score for ``text`` (its best cosine similarity), best first; ties keep
        the routes' order. What :meth:`route` decides from, for logs and tests."""
        np = numpy()
        matrix = self._route_vectors()
        query = _unit(self._embed([self._check_text(text)]))[0]
        best = np.maximum.reduceat(matrix @ query, self._starts)
        scores = {name: float(s) for name, s in zip(self.routes, best, strict=True)}
        return dict(sorted(scores.items(), key=lambda item: -item[1]))

    def threaded(self) -> Callable[[Mapping[str, Any]], Awaitable[str | None]]:
        """This router as an async function that embeds in a worker thread: the CONDITIONAL
        step calls a plain function on the event loop, and the first call loads the model."""

        async def route_in_thread(state: Mapping[str, Any]) -> str | None:
            return await asyncio.to_thread(self, state)

        return route_in_thread

    def _route_vectors(self) -> Vectors:
        if self._matrix is None:
            embedder = self.embedder
            with self._lock:
                if self._matrix is None:
                    self._matrix = _unit(self._embed(self._descriptions, embedder))
        return self._matrix

    def _embed(self, texts: list[str], embedder: Embedder | None = None) -> Vectors:
        np = numpy()
        vectors = np.asarray((embedder or self.embedder).embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise RoutingError(
                f"the embedder returned shape {vectors.shape} for {len(texts)} texts; expected "
                "one row per text"
            )
        if self._matrix is not None and vectors.shape[1] != self._matrix.shape[1]:
            raise RoutingError(
                f"the embedder returned {vectors.shape[1]} dimensions, the routes have "
                f"{self._matrix.shape[1]}"
            )
        return vectors

    def __repr__(self) -> str:
        return (
            f"SemanticRouter(routes={list(self.routes)}, threshold={self.threshold}, "
            f"default={self.default!r})"
        )


def _unit(vectors: Vectors) -> Vectors:
    """Rows scaled to length 1, so a dot product is a cosine (whatever the embedder did)."""
    np = numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


class KeywordRouter(_TextRouter):
    """Routes to the first route (in the rules' order) with a keyword or pattern in the text.

    A keyword (or phrase) matches as a whole word, ignoring case: ``"bill"`` does not match
    "billion". For anything else give a compiled ``re.Pattern``, used as it is. Needs no
    model: the fallback when the ``embeddings`` extra is not installed."""

    def __init__(
        self,
        rules: Mapping[str, Pattern | Sequence[Pattern]],
        *,
        text: TextSource,
        default: str | None = None,
    ) -> None:
        names = _route_names(rules, "KeywordRouter", "rules")
        super().__init__(names, text, default)
        self._rules: list[tuple[str, list[tuple[str, re.Pattern[str]]]]] = []
        for name in names:
            found = _phrases(rules[name], f"KeywordRouter.rules[{name!r}]", allow_patterns=True)
            self._rules.append((name, [_compile(p) for p in found]))

    def route(self, text: str) -> str | None:
        self._check_text(text)
        for name, patterns in self._rules:
            if any(p.search(text) for _, p in patterns):
                return name
        return self.default

    def explain(self, text: str) -> dict[str, list[str]]:
        """The keywords (or patterns) that occur in ``text``, per route, in the rules' order."""
        self._check_text(text)
        found = {name: [k for k, p in patterns if p.search(text)] for name, patterns in self._rules}
        return {name: hits for name, hits in found.items() if hits}

    def __repr__(self) -> str:
        return f"KeywordRouter(routes={list(self.routes)}, default={self.default!r})"


def _compile(pattern: Pattern) -> tuple[str, re.Pattern[str]]:
    """A keyword as a whole-word, case-blind pattern (any run of spaces inside a phrase
    matches any whitespace), labelled with the keyword; a pattern as it is."""
    if isinstance(pattern, re.Pattern):
        return pattern.pattern, pattern
    words = r"\s+".join(re.escape(w) for w in pattern.split())
    return pattern, re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def semantic_or_keywords(
    routes: Mapping[str, str | Sequence[str]],
    keywords: Mapping[str, Pattern | Sequence[Pattern]],
    *,
    text: TextSource,
    threshold: float | None = None,
    default: str | None = None,
    embedder: Embedder | None = None,
) -> SemanticRouter | KeywordRouter:
    """A :class:`SemanticRouter` over ``routes`` when the ``embeddings`` extra is installed
    (or an ``embedder`` is given), else a :class:`KeywordRouter` over ``keywords``: the same
    workflow runs, less well, where PyTorch cannot be installed. Routes without keywords are
    reachable only as the default; keyword routes must be routes (or the default)."""
    names = _route_names(routes, "semantic_or_keywords", "routes")
    _route_names(keywords, "semantic_or_keywords", "keywords")
    for name in keywords:
        if name not in routes and name != default:
            raise DefinitionError(
                f"keyword route {name!r} is not one of the routes ({', '.join(names)})",
                path="semantic_or_keywords.keywords",
            )
    if embedder is not None or embeddings_available():
        return SemanticRouter(
            routes, text=text, threshold=threshold, default=default, embedder=embedder
        )
    rules: dict[str, Pattern | Sequence[Pattern]] = dict(keywords)
    rules.update({name: () for name in names if name not in keywords})
    return KeywordRouter(rules, text=text, default=default)
