"""Finding a workflow from a target string: ``pkg.module:attr``, ``path/file.py:attr`` or
``path/file.py`` (the module's only workflow, or its ``workflow`` attribute)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cadenza.errors import CadenzaError


class TargetError(CadenzaError):
    """A target string that does not name a loadable workflow."""


SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def load_target(target: str, *, handler_modules: Sequence[str] = ()) -> tuple[Any, str]:
    """Return ``(workflow, canonical_target)``; the canonical form survives a change of the
    working directory (file paths are made absolute, handler modules are kept with them).

    A YAML or JSON file is a declarative workflow (``path.yaml``, or
    ``path.yaml#handlers=pkg.mod,pkg.other`` to name the modules holding its handlers)."""
    path_part, _, fragment = target.partition("#handlers=")
    if path_part.endswith(SPEC_SUFFIXES):
        from cadenza.graph.spec_compile import load_workflow_file

        modules = [*filter(None, fragment.split(",")), *handler_modules]
        path = Path(path_part).resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {path_part}")
        workflow = load_workflow_file(path_part, handler_modules=modules)
        canonical = f"{path}#handlers={','.join(modules)}" if modules else str(path)
        return workflow, canonical
    module_part, _, attr = target.partition(":")
    if module_part.endswith(".py") or "/" in module_part or Path(module_part).is_file():
        path = Path(module_part).resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {module_part}")
        module = _load_file(path)
        canonical_module = str(path)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as exc:
            raise TargetError(f"cannot import {module_part!r}: {exc}") from None
        canonical_module = module_part
    workflow, attr = _pick(module, attr, module_part)
    return workflow, f"{canonical_module}:{attr}"


def _load_file(path: Path) -> Any:
    name = f"cadenza_target_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise TargetError(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def _pick(module: Any, attr: str, where: str) -> tuple[Any, str]:
    from cadenza.graph.builder import Workflow

    if attr:
        if not hasattr(module, attr):
            raise TargetError(f"{where} has no attribute {attr!r}")
        return getattr(module, attr), attr
    found = {k: v for k, v in vars(module).items() if isinstance(v, Workflow)}
    if "workflow" in found:
        return found["workflow"], "workflow"
    if len(found) == 1:
        return next(iter(found.items()))[::-1]
    if not found:
        raise TargetError(f"{where} defines no Workflow; name one with {where}:ATTRIBUTE")
    raise TargetError(
        f"{where} defines several workflows ({', '.join(sorted(found))}); pick one with "
        f"{where}:NAME"
    )
