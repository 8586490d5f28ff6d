"""Run ids by unique prefix, as git takes abbreviated commit ids: ``cadenza runs show 3f2a``.

Each store only finds the ids that start with a text (:meth:`Store.resolve_run_id` calls
:func:`pick_run_id` with at most :data:`CANDIDATES` of them, in id order); the rule for
choosing among them is here, once."""

from __future__ import annotations

from collections.abc import Sequence

from cadenza.core.errors import RunNotFound, StoreError
from cadenza.core.ids import RunId

#: How many ids a store reads for one prefix: enough to name a few candidates in the error
#: (and know there are more) without reading every run for a one-letter prefix.
CANDIDATES = 6


class AmbiguousRunId(StoreError):
    """A prefix that starts the ids of several runs; ``candidates`` holds some of them."""

    def __init__(self, prefix: str, candidates: Sequence[str]) -> None:
        self.prefix = prefix
        self.candidates = list(candidates[: CANDIDATES - 1])
        more = ", ..." if len(candidates) >= CANDIDATES else ""
        super().__init__(
            f"run id {prefix!r} is ambiguous: it starts {', '.join(self.candidates)}{more}; "
            "give more of the id"
        )


def pick_run_id(prefix: str, candidates: Sequence[str]) -> RunId:
    """The run ``prefix`` names, given the stored ids that start with it (in id order, at most
    :data:`CANDIDATES`): an id equal to ``prefix``, else the only one. None is
    :class:`RunNotFound`; several are :class:`AmbiguousRunId`."""
    found = [c for c in candidates if c.startswith(prefix)]
    if not found:
        raise RunNotFound(prefix)
    if prefix in found:
        return RunId(prefix)
    if len(found) == 1:
        return RunId(found[0])
    raise AmbiguousRunId(prefix, found)


def check_prefix(prefix: str) -> None:
    """An empty prefix would name every run."""
    if not prefix:
        raise StoreError("a run id (or the start of one) cannot be empty")


def prefix_upper_bound(prefix: str) -> str:
    """A string above every string that starts with ``prefix`` but one that continues with
    U+10FFFF (not a character a run id holds), so that ``prefix <= id < bound`` is a range
    scan of the ids' index in code-point (and so UTF-8 byte) order."""
    return prefix + "\U0010ffff"
