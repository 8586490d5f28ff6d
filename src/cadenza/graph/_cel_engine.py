"""The CEL engine (the ``common-expression-language`` package's compiled module), loaded on
first use and without the package's command-line tool.

``import cel`` runs ``cel/__init__.py``, which imports ``cel.cli`` and with it prompt_toolkit:
about 60 ms that every process compiling a condition (and, through eager imports, every
``cadenza`` command) would pay for a REPL it never starts. The compiled extension ``cel.cel``
holds everything Cadenza calls (``compile``, ``Program``, ``Context``), so it is loaded from
the package's folder directly. If the package is laid out differently (a future release), the
ordinary ``import cel`` is the fallback: slower, never wrong."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

_EXTENSION = "cel.cel"


@cache
def engine() -> ModuleType:
    """The compiled CEL module (``compile``, ``Program``, ``Context``, ``evaluate``)."""
    loaded = sys.modules.get(_EXTENSION)
    if loaded is not None:
        return loaded
    module = _load_extension()
    if module is not None:
        return module
    return importlib.import_module("cel")


def _load_extension() -> ModuleType | None:
    """``cel.cel`` loaded from its file without running the package's ``__init__``; ``None``
    where the package does not hold exactly one such extension."""
    spec = importlib.util.find_spec("cel")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    found = [
        path
        for folder in spec.submodule_search_locations
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (path := Path(folder) / f"cel{suffix}").is_file()
    ]
    if len(found) != 1:
        return None
    loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, str(found[0]))
    extension = importlib.util.spec_from_file_location(_EXTENSION, found[0], loader=loader)
    if extension is None:
        return None
    module = importlib.util.module_from_spec(extension)
    loader.exec_module(module)
    if not callable(getattr(module, "compile", None)):
        return None
    # Registered under its own name, so that a later ``import cel`` reuses it.
    sys.modules[_EXTENSION] = module
    return module


def compile(text: str) -> Any:
    """``cel.compile(text)``: a program, or the engine's error (a Rust panic included)."""
    return engine().compile(text)
