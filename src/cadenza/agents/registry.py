"""Models by name, for workflows written as data: a step names its model (``model: support``)
and this finds it. A name is a model registered here, ``scripted:path/to/script.json`` (a
:class:`ScriptedModel`), an import path ``package.module:attribute`` holding a model, or else
a provider spec handed to :func:`cadenza.agents.config.load_model` (``openai:gpt-4o-mini``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cadenza.agents.model import ChatModel
from cadenza.core.errors import DefinitionError


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, Any] = {}

    def register(self, name: str, model: Any) -> Any:
        """Register ``model`` under ``name``; returns the model."""
        if not isinstance(model, ChatModel):
            raise DefinitionError(f"model {name!r} is not a chat model: {model!r}")
        known = self._models.get(name)
        if known is not None and known is not model:
            raise DefinitionError(f"model name {name!r} is taken by {known.name!r}")
        self._models[name] = model
        return model

    def names(self) -> list[str]:
        return sorted(self._models)

    def resolve(self, ref: str, *, base: Path | None = None) -> Any:
        """The model ``ref`` names; ``base`` is the folder relative script paths start from."""
        if ref in self._models:
            return self._models[ref]
        if ref.startswith("scripted:"):
            return _scripted(ref.removeprefix("scripted:"), base)
        found = _imported(ref)
        if found is not None:
            return found
        if ":" not in ref:
            known = ", ".join(self.names()) or "none"
            raise DefinitionError(
                f"unknown model {ref!r} (registered: {known}); register it with "
                "register_model(name, model), or write provider:model (openai:gpt-4o-mini), "
                "scripted:FILE.json or package.module:attribute"
            )
        from cadenza.agents.config import load_model

        try:
            model = load_model(ref)
        except Exception as exc:
            raise DefinitionError(f"cannot load model {ref!r}: {exc}") from None
        if not isinstance(model, ChatModel):
            raise DefinitionError(f"model {ref!r} did not load as a chat model: {model!r}")
        return model


def _scripted(file: str, base: Path | None) -> Any:
    from cadenza.agents.scripted import ScriptedModel

    path = Path(file)
    if not path.is_absolute() and base is not None and (base / path).is_file():
        path = base / path
    try:
        return ScriptedModel.from_file(path)
    except ValueError as exc:
        raise DefinitionError(str(exc)) from None


def _imported(ref: str) -> Any:
    """The model at ``package.module:attribute``, or ``None`` when ``ref`` is not one."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    value = getattr(module, attr, None)
    return value if isinstance(value, ChatModel) else None


#: The default registry, used by workflows loaded from files.
models = ModelRegistry()


def register_model(name: str, model: Any) -> Any:
    """Make ``model`` known to workflow files as ``name``; returns it."""
    return models.register(name, model)


def resolve_model(ref: str, *, base: Path | None = None) -> Any:
    return models.resolve(ref, base=base)
