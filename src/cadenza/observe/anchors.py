"""Anchors: each run's chain head, kept outside the database.

A hash chain without a secret proves nothing against someone who can rewrite the database:
they can recompute every hash after an edit, or cut the end off a log. Both are caught by
comparing the log with a ``(seq, hash)`` of the run recorded earlier somewhere they cannot
write (a ticket, a signed log, another machine). ``cadenza audit anchor`` writes these heads
and ``cadenza audit verify --anchor FILE`` checks them, through
:func:`cadenza.observe.audit.verify`'s ``anchors`` (a mapping of run id to ``(seq, hash)``).

The file is JSON lines, one object per run::

    {"run_id": "3f2a…", "seq": 12, "hash": "9c0e…"}

Blank lines are ignored, as are other keys (room for a note or a time). A file may name a run
more than once (anchors appended over time): the one with the highest seq is checked, since the
chain ties every earlier event into its hash; two lines that give one event different hashes
are an error in the file. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from cadenza.core.errors import CadenzaError
from cadenza.core.ids import RunId

__all__ = ["AnchorError", "anchor_lines", "parse_anchors"]

_HASH = re.compile(r"[0-9a-f]{64}")


class AnchorError(CadenzaError):
    """A line of an anchor file is not an anchor; ``line`` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


def anchor_lines(heads: Iterable[tuple[RunId, int, str]]) -> str:
    """The anchor file holding ``(run_id, seq, hash)`` heads, one JSON object per line."""
    return "".join(
        json.dumps({"run_id": run_id, "seq": seq, "hash": digest}, ensure_ascii=False) + "\n"
        for run_id, seq, digest in heads
    )


def parse_anchors(text: str) -> dict[RunId, tuple[int, str]]:
    """The anchors of an anchor file, by run: ``{run_id: (seq, hash)}``, as ``verify`` takes
    them. Raises :class:`AnchorError` at the first line that is not an anchor."""
    anchors: dict[RunId, tuple[int, str]] = {}
    seen: dict[tuple[RunId, int], tuple[str, int]] = {}  # (run, seq) -> (hash, line)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        run_id, seq, digest = _parse_line(number, line)
        earlier = seen.setdefault((run_id, seq), (digest, number))
        if earlier[0] != digest:
            raise AnchorError(
                number,
                f"run {run_id} event {seq} has another hash on line {earlier[1]}; "
                "the file contradicts itself",
            )
        if run_id not in anchors or anchors[run_id][0] < seq:
            anchors[run_id] = (seq, digest)
    return anchors


def _parse_line(number: int, line: str) -> tuple[RunId, int, str]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise AnchorError(number, f"not JSON: {message}") from None
    if not isinstance(value, Mapping):
        raise AnchorError(number, f"expected a JSON object, got {_kind(value)}")
    run_id, seq, digest = value.get("run_id"), value.get("seq"), value.get("hash")
    if not isinstance(run_id, str) or not run_id:
        raise AnchorError(number, '"run_id" must be a non-empty string')
    if type(seq) is not int or seq < 1:
        raise AnchorError(number, '"seq" must be an integer >= 1')
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise AnchorError(number, '"hash" must be 64 lowercase hex digits (a SHA-256)')
    return RunId(run_id), seq, digest


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
