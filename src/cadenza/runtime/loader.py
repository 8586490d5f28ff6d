"""Finding a workflow from a target string: ``pkg.module:attr``, ``path/file.py:attr``,
``path/file.py`` (the module's only workflow, or its ``workflow`` attribute) or a YAML/JSON
file, optionally followed by ``#`` and how to build it (see :func:`split_target`)."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from cadenza.core.errors import CadenzaError


class TargetError(CadenzaError):
    """A target string that does not name a loadable workflow."""


SPEC_SUFFIXES = (".yaml", ".yml", ".json")

# The part of a target after the path that says how to build the workflow; only these keys
# start it, so that a ``#`` elsewhere in a file name stays part of the name.
_FRAGMENT = re.compile(r"#((?:handlers|endpoint\.[^=&#]+)=[^#]*)$")
_ENDPOINT = "endpoint."


def split_target(target: str) -> tuple[str, list[str], dict[str, str]]:
    """``(path_or_module, handler_modules, endpoints)`` of a target. After the path, a target
    may say how to build the workflow, URL-encoded: ``#handlers=pkg.mod,pkg.other`` (the
    modules holding a YAML/JSON file's handlers) and ``&endpoint.STEP=URL`` (where the
    webhook step ``STEP`` posts instead of its declared endpoint)."""
    found = _FRAGMENT.search(target)
    if found is None:
        return target, [], {}
    modules: list[str] = []
    endpoints: dict[str, str] = {}
    for key, value in parse_qsl(found[1], keep_blank_values=True):
        if key == "handlers":
            modules.extend(filter(None, value.split(",")))
        elif key.startswith(_ENDPOINT):
            endpoints[key.removeprefix(_ENDPOINT)] = value
        else:
            raise TargetError(f"{target}: unknown part {key!r} after '#'")
    return target[: found.start()], modules, endpoints


def join_target(base: str, handler_modules: Sequence[str], endpoints: Mapping[str, str]) -> str:
    """The target string :func:`split_target` reads back as ``base`` built this way."""
    parts = [f"handlers={quote(','.join(handler_modules), safe=',.')}"] if handler_modules else []
    parts += [
        f"{_ENDPOINT}{quote(step, safe='')}={quote(url, safe=':/?=,.')}"
        for step, url in sorted(endpoints.items())
    ]
    return f"{base}#{'&'.join(parts)}" if parts else base


def cwd_importable() -> None:
    """Let modules in the current directory be imported, as ``python -c`` and ``python -m``
    do (a ``cadenza`` script starts with its own folder on the path instead): so that
    ``cadenza run orders:wf`` finds ``./orders.py`` and ``--handlers pkg.mod`` finds
    ``./pkg/mod.py``. The command line calls it; a library is not one to change the path."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def load_target(
    target: str,
    *,
    handler_modules: Sequence[str] = (),
    endpoints: Mapping[str, str] | None = None,
) -> tuple[Any, str]:
    """Return ``(workflow, canonical_target)``; the canonical form survives a change of the
    working directory (file paths are made absolute) and rebuilds the same definition (the
    handler modules and ``endpoints`` are kept with it), so that another process deciding or
    resuming a run finds the version it started with.

    A YAML or JSON file is a declarative workflow (``path.yaml``, or
    ``path.yaml#handlers=pkg.mod,pkg.other`` to name the modules holding its handlers).
    ``endpoints`` maps webhook step names to the URLs they post to instead of their own (the
    workflow's ``webhook_endpoints``): a test server, a staging service."""
    path_part, fragment_modules, fragment_endpoints = split_target(target)
    endpoints = {**fragment_endpoints, **(endpoints or {})}
    if path_part.endswith(SPEC_SUFFIXES):
        from cadenza.graph.spec_compile import load_workflow_file

        modules = [*fragment_modules, *handler_modules]
        path = Path(path_part).resolve()
        if not path.is_file():
            raise TargetError(f"no such file: {path_part}")
        workflow = load_workflow_file(path_part, handler_modules=modules)
        return _redirect(workflow, endpoints, target), join_target(str(path), modules, endpoints)
    module_part, _, attr = path_part.partition(":")
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
    canonical = join_target(f"{canonical_module}:{attr}", [], endpoints)
    return _redirect(workflow, endpoints, target), canonical


def _redirect(workflow: Any, endpoints: Mapping[str, str], target: str) -> Any:
    """``workflow`` with its webhooks posting to ``endpoints``, whose origins are allowed
    (``webhook_allow``): whoever names an endpoint for a run (``cadenza run --endpoint``)
    chose that destination, a local receiver included. A copy, so that the module's own
    workflow object stays as its author wrote it."""
    if not endpoints:
        return workflow
    from cadenza.graph.builder import Workflow

    if not isinstance(workflow, Workflow):
        raise TargetError(f"{target}: endpoints can be set on a Workflow only")
    config = workflow.config
    origins = sorted({_origin(url) for url in endpoints.values()})
    try:
        return copy.copy(workflow).configure(
            webhook_endpoints={**config.webhook_endpoints, **endpoints},
            webhook_allow=tuple(dict.fromkeys([*config.webhook_allow, *origins])),
        )
    except ValueError as exc:  # pydantic's ValidationError: an endpoint it cannot allow
        raise TargetError(f"{target}: {exc}") from None


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of an endpoint URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


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
