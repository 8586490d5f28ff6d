"""The layers depend on each other one way only. The import graph of ``src/cadenza`` is read
from the source (every ``import``, those inside functions included; those under ``if
TYPE_CHECKING:`` left out, as they never run): the leaf package ``cadenza.core`` imports nothing
else of Cadenza's, the runtime no step kind (it is given the executors), the store neither
runtime nor steps, and no import cycle runs through the runtime, the steps or the store."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "cadenza"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (its ``else`` stays)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield node
        yield from _nodes(node)


def _resolve(name: str, package: str, level: int) -> str:
    if not level:
        return name
    base = package.split(".")
    base = base[: len(base) - level + 1]
    return ".".join([*base, name] if name else base)


@cache
def imports(module: str) -> frozenset[str]:
    """The Cadenza modules ``module`` imports when it runs (at import time or later)."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = modules()
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", package, node.level)
            # ``from package import module`` imports the module; ``from module import name``
            # the module.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:  # ``import a.b.c`` of a name inside a module
                name = name.rpartition(".")[0]
            if name.startswith("cadenza") and name != module:
                found.add(name)
    return frozenset(found)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(source: str, forbidden: tuple[str, ...], allowed: str = "") -> list[str]:
    return [
        f"{module} imports {target}"
        for module in modules()
        if _in(module, source)
        for target in sorted(imports(module))
        if any(_in(target, f) for f in forbidden) and not (allowed and _in(target, allowed))
    ]


def test_the_graph_is_read() -> None:
    assert "cadenza.core.errors" in imports("cadenza.runtime.engine")
    assert "cadenza.runtime.calls" in imports("cadenza.steps.task")
    assert "cadenza.runtime.run" not in imports("cadenza.steps.task")  # TYPE_CHECKING only
    assert "cadenza.runtime.loader" in imports("cadenza.runtime.definitions")  # from pkg import


def test_core_imports_nothing_else_of_cadenza() -> None:
    assert _violations("cadenza.core", ("cadenza",), allowed="cadenza.core") == []


def test_the_runtime_imports_no_step_kind() -> None:
    assert _violations("cadenza.runtime", ("cadenza.steps",)) == []


def test_the_store_imports_neither_runtime_nor_steps() -> None:
    assert _violations("cadenza.store", ("cadenza.runtime", "cadenza.steps")) == []


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(module: str) -> None:
        nonlocal counter
        index[module] = low[module] = counter
        counter += 1
        stack.append(module)
        on_stack.add(module)
        for target in imports(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules():
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_runs_through_the_runtime_the_steps_or_the_store() -> None:
    layers = ("cadenza.runtime", "cadenza.steps", "cadenza.store")
    involved = [c for c in _cycles() if any(_in(m, layer) for m in c for layer in layers)]
    assert involved == []
