"""The workflows a server knows: loaded from targets as ``cadenza worker --workflow`` loads
them (``module:attr``, ``file.py``, a YAML/JSON file), each with its canonical target (so a
worker can load it too) and, for a YAML/JSON file, its text as written."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza.core.errors import CadenzaError
from cadenza.graph.ir import WorkflowIR

__all__ = ["Catalog", "Entry", "definition_json"]

#: Workflow files are read with this bound already (cadenza.graph.spec_read); the source kept
#: for the API is cut at the same size.
MAX_SOURCE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    """One version of a workflow: its IR, what to start it with, where it came from."""

    ir: WorkflowIR
    workflow: Any  # the Workflow (or IR) given to the engine
    target: str
    source: str | None = None
    source_format: str | None = None  # "yaml" or "json" when ``source`` is set

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def version(self) -> str:
        return self.ir.version


class Catalog:
    """Entries by name, each name's versions in the order they were loaded; the last one
    loaded is the one new runs start on."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._by_name: dict[str, dict[str, Entry]] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Entry) -> None:
        versions = self._by_name.setdefault(entry.name, {})
        versions.pop(entry.version, None)
        versions[entry.version] = entry

    @classmethod
    def load(cls, targets: Sequence[str], handlers: Sequence[str] = ()) -> Catalog:
        """Load every target (a problem is a :class:`CadenzaError` naming the target)."""
        from cadenza.runtime.loader import SPEC_SUFFIXES, load_target, split_target

        catalog = cls()
        for target in targets:
            try:
                workflow, canonical = load_target(target, handler_modules=handlers)
                ir = workflow.compile() if hasattr(workflow, "compile") else workflow
            except CadenzaError as exc:
                raise CadenzaError(f"--workflow {target}: {exc}") from None
            if not isinstance(ir, WorkflowIR):
                raise CadenzaError(f"--workflow {target}: not a workflow ({type(ir).__name__})")
            path = split_target(target)[0]
            source, fmt = None, None
            if path.endswith(SPEC_SUFFIXES):
                source = _read_source(Path(path))
                fmt = "json" if path.endswith(".json") else "yaml"
            catalog.add(Entry(ir, workflow, canonical, source, fmt))
        return catalog

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def current(self, name: str) -> Entry | None:
        versions = self._by_name.get(name)
        return next(reversed(versions.values())) if versions else None

    def get(self, name: str, version: str | None = None) -> Entry | None:
        if version is None:
            return self.current(name)
        return self._by_name.get(name, {}).get(version)

    def versions(self, name: str) -> list[Entry]:
        return list(self._by_name.get(name, {}).values())

    def entries(self) -> list[Entry]:
        return [e for name in self.names() for e in self._by_name[name].values()]

    def allowed_users(self, name: str, version: str | None = None) -> tuple[str, ...] | None:
        """The ``allowed_users`` of that version (else of the current one); ``None`` for a
        workflow this server does not know."""
        entry = self.get(name, version) or self.current(name)
        return None if entry is None else tuple(entry.ir.config.allowed_users)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())


def _read_source(path: Path) -> str:
    with path.open("rb") as file:
        raw = file.read(MAX_SOURCE_BYTES + 1)
    return raw[:MAX_SOURCE_BYTES].decode("utf-8", errors="replace").removeprefix("\ufeff")


def definition_json(ir: WorkflowIR) -> dict[str, Any]:
    """The IR as JSON: the description its version hashes, with that version."""
    return {
        "name": ir.name,
        "version": ir.version,
        "graph": ir.graph.describe(),
        "schema": ir.schema.describe(),
        "config": ir.config.model_dump(mode="json"),
    }
