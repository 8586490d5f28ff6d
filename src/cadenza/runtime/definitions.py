"""The workflow definitions an engine knows, by name and version, and how a run's progress is
loaded from the store with the definition it started on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadenza.core.errors import CadenzaError, VersionMismatch
from cadenza.graph.builder import Workflow
from cadenza.graph.ir import WorkflowIR
from cadenza.runtime import loader
from cadenza.runtime.progress import Progress
from cadenza.store.base import RunRecord, Store


class Definitions:
    """Registered definitions (and the target each can be loaded from by other processes);
    a run whose definition is not registered is loaded from its target."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._irs: dict[tuple[str, str], WorkflowIR] = {}
        self._targets: dict[tuple[str, str], str] = {}

    def register(self, workflow: Workflow | WorkflowIR, *, target: str = "") -> WorkflowIR:
        ir = workflow.compile() if isinstance(workflow, Workflow) else workflow
        self._irs[(ir.name, ir.version)] = ir
        if target:
            self._targets[(ir.name, ir.version)] = target
        return ir

    def known(self) -> list[tuple[str, str]]:
        """The ``(name, version)`` of every registered workflow."""
        return list(self._irs)

    def target(self, ir: WorkflowIR) -> str:
        """Where other processes load ``ir`` from (``""``: unknown)."""
        return self._targets.get((ir.name, ir.version), "")

    def resolve(self, record: RunRecord, workflow: Workflow | WorkflowIR | None) -> WorkflowIR:
        """The definition ``record`` runs on: ``workflow`` if given, else the registered one,
        else the one its target loads; refused if it is not the version the run started on."""
        if workflow is not None:
            ir = self.register(workflow)
        elif (record.workflow, record.version) in self._irs:
            ir = self._irs[(record.workflow, record.version)]
        elif record.target:
            loaded, _ = loader.load_target(record.target)
            ir = self.register(loaded)
        else:
            raise CadenzaError(
                f"run {record.run_id} is of workflow {record.workflow!r}, which this engine does "
                "not know; register it with engine.register(...) or pass it to resume()"
            )
        if ir.name != record.workflow or ir.version != record.version:
            raise VersionMismatch(
                f"run {record.run_id} was started on {record.workflow} version {record.version}, "
                f"but the loaded definition is {ir.name} version {ir.version}; runs resume only "
                "on the definition they started with"
            )
        return ir

    async def load(self, record: RunRecord, ir: WorkflowIR | None) -> Progress:
        """The run's progress: its latest snapshot and the events after it, folded with the
        reducers of ``ir`` (or of its definition, where this engine can find it)."""
        reducers = ir.schema.reducers if ir else self._reducers_for(record)
        snapshot = await self.store.load_snapshot(record.run_id)
        events = await self.store.read_events(
            record.run_id, after_seq=snapshot.seq if snapshot else 0
        )
        progress = Progress.restore(reducers, snapshot).apply_all(events)
        if ir is not None:
            ir.schema.revive(progress.state)
        return progress

    def _reducers_for(self, record: RunRecord) -> Mapping[str, Any]:
        ir = self._irs.get((record.workflow, record.version))
        if ir is None and record.target:
            try:
                loaded, _ = loader.load_target(record.target)
                ir = self.register(loaded)
            except CadenzaError:
                ir = None
        return ir.schema.reducers if ir else {}
