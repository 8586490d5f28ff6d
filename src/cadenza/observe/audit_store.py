"""Verifying a whole store: read each run's rows as stored and check them
(:func:`cadenza.observe.audit_verify.check_run`). The I/O half of the verifier, kept apart so
that the checks stay plain functions over plain data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cadenza.core.errors import RunNotFound
from cadenza.core.ids import RunId
from cadenza.core.state import Reducer
from cadenza.observe.audit_verify import RunCheck, check_run
from cadenza.store.base import Store, StoredLog

__all__ = ["verify_store"]

#: The reducers of the workflows whose definitions the auditor has, by ``(name, version)``.
Definitions = Mapping[tuple[str, str], Mapping[str, Reducer]]


async def verify_store(
    store: Store,
    run_ids: Iterable[RunId] | None = None,
    *,
    anchors: Mapping[RunId, tuple[int, str]] | None = None,
    definitions: Definitions | None = None,
) -> list[RunCheck]:
    """Check every run the store holds (or ``run_ids``); one :class:`RunCheck` per run, a
    broken run never stops the others. ``anchors`` are ``(seq, hash)`` heads recorded earlier
    (:mod:`cadenza.observe.anchors`); checking every run, an anchored run the store no longer
    holds is reported as :attr:`~cadenza.observe.audit.Reason.VANISHED`. ``definitions`` give
    the reducers snapshot values are folded with (without them, values merged by a reducer are
    left unchecked: :attr:`RunCheck.unchecked`).

    Raises :class:`RunNotFound` for a run named in ``run_ids`` that the store does not hold and
    no anchor names (a typo, not tampering)."""
    anchors = anchors or {}
    definitions = definitions or {}
    named = run_ids is not None
    ids = list(run_ids) if run_ids is not None else await store.stored_run_ids()
    checks: list[RunCheck] = []
    for run_id in ids:
        log = await store.read_stored(run_id)
        if log.empty and named and run_id not in anchors:
            raise RunNotFound(run_id)
        reducers = None
        run = log.run
        if run is not None and isinstance(run.workflow, str) and isinstance(run.version, str):
            reducers = definitions.get((run.workflow, run.version))
        checks.append(check_run(log, anchor=anchors.get(run_id), reducers=reducers))
    if not named:
        held = set(ids)
        for run_id, anchor in anchors.items():
            if run_id not in held:  # gone without a trace: not even listed
                checks.append(check_run(StoredLog(run_id, None, [], None), anchor=anchor))
    return checks
