"""The facade's modules expose the public names of the LangGraph modules they mirror.

The few names left out are listed with the reason, and the test checks that they really
are absent, so the list stays true."""

from __future__ import annotations

import importlib

import pytest

MIRRORED = {
    "graph": None,
    "graph.state": None,
    "graph.message": None,
    "types": None,
    "errors": None,
    "constants": None,
    "channels": None,
    "managed": None,
    "runtime": None,
    "prebuilt": None,
    "config": ("get_config", "get_store", "get_stream_writer"),
    "checkpoint.memory": ("InMemorySaver", "MemorySaver", "PersistentDict"),
    "cache.base": ("BaseCache", "FullKey", "Namespace"),
    "cache.memory": ("InMemoryCache",),
}

OMITTED = {
    "channels": {"DeltaChannel": "delta-encoded channels are a storage format of LangGraph's own"},
    "runtime": {
        "BaseUser": "server (LangGraph Platform) authentication",
        "RunControl": "cooperative drain of LangGraph Platform workers",
        "ServerInfo": "LangGraph Platform deployment data",
    },
    "prebuilt": {"ToolCallTransformer": "a transformer of LangGraph's v3 event streams"},
}


def _public(module: object, listed: tuple[str, ...] | None) -> set[str]:
    if listed is not None:
        return set(listed)
    return set(module.__all__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", sorted(MIRRORED))
def test_facade_exposes_langgraphs_public_names(path: str) -> None:
    reference = importlib.import_module(f"langgraph.{path}")
    facade = importlib.import_module(f"cadenza.langgraph.{path}")
    omitted = set(OMITTED.get(path, {}))
    expected = _public(reference, MIRRORED[path]) - omitted
    missing = sorted(name for name in expected if not hasattr(facade, name))
    assert missing == [], f"cadenza.langgraph.{path} lacks {missing}"
    for name in omitted:
        assert not hasattr(facade, name), f"{name} is listed as omitted but exists"
    if MIRRORED[path] is None:
        listed = set(facade.__all__)
        assert expected <= listed, f"{sorted(expected - listed)} missing from __all__"


@pytest.mark.parametrize("path", sorted(MIRRORED))
def test_kinds_match(path: str) -> None:
    """A name that is a class in LangGraph is a class in the facade, a function a function."""
    reference = importlib.import_module(f"langgraph.{path}")
    facade = importlib.import_module(f"cadenza.langgraph.{path}")
    for name in _public(reference, MIRRORED[path]):
        if not hasattr(facade, name):
            continue
        ours, theirs = getattr(facade, name), getattr(reference, name)
        assert isinstance(ours, type) == isinstance(theirs, type), name
        assert callable(ours) == callable(theirs), name


def test_facade_without_langchain_imports() -> None:
    """The core modules load without langchain-core or langgraph (they are optional)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('langchain_core', 'langgraph'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cadenza.langgraph.graph import StateGraph, START\n"
        "from cadenza.langgraph.types import Send, Command, interrupt\n"
        "from cadenza.langgraph import errors, config, constants\n"
        "g = StateGraph(dict)\n"
        "g.add_node('a', lambda s: {'x': 1})\n"
        "g.add_edge(START, 'a')\n"
        "print(g.compile().invoke({'y': 0}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'x': 1}"
