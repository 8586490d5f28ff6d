"""Reading a workflow file safely: bytes to plain data, and where each part of it is.

A workflow file is input from anywhere (a pull request, an upload, a generator gone wrong),
so reading one is bounded: its size, how deeply it nests, how many values it holds once YAML
aliases are expanded, and how long its integers are. Past a bound, or on bytes that are not
UTF-8 text, reading stops with a located :class:`SpecError` rather than a traceback, an
exhausted stack or an exhausted memory. The bounds are stated in the README ("Workflows in
YAML or JSON"); keep the two in step.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadenza.core.errors import DefinitionError

#: The largest workflow file read, in bytes (1 MiB; the 1,000-step benchmark spec is ~50 KiB).
MAX_FILE_BYTES = 1 << 20
#: How deeply lists and mappings may nest (a step inside a LOOP inside a PARALLEL is ~6).
MAX_DEPTH = 64
#: How many values (scalars, lists, mappings and keys) a document may hold, each alias
#: counted as the values it stands for: this is what bounds a "billion laughs" document.
#: The 1,000-step benchmark spec holds ~7,100; a document at the bound reads in ~0.3 s.
MAX_NODES = 20_000
#: The most digits an integer may have (every count and duration in a workflow fits in 20).
MAX_INT_DIGITS = 20
#: The most problems one error shows; the rest are counted on a last line.
MAX_SHOWN = 50

Loc = tuple[str | int, ...]
Marks = dict[Loc, tuple[int, int]]

# Control characters and the like: YAML refuses them outside escapes, and a terminal may act
# on them, so a message shows them escaped. Everything str.splitlines() breaks at is here.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAKS = re.compile("[\n\r\t]")
# What YAML 1.1 (and so libyaml) accepts in a stream: the complement is refused up front,
# with a position and a hint, instead of libyaml's unlocated ReaderError.
_NOT_YAML = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


@dataclass(frozen=True, slots=True)
class Problem:
    path: Loc
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def json_path(self) -> str:
        out = "$"
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


class SpecError(DefinitionError):
    """A workflow file with problems; ``str()`` is one ``FILE:LINE:COL: message`` line each
    (``FILE: message`` where there is no position), at most :data:`MAX_SHOWN` of them and a
    last ``FILE: ... and N more problems`` line. ``problems`` keeps them all."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self, limit: int | None = MAX_SHOWN) -> list[str]:
        """One line per problem, every line starting with the file name; ``limit`` bounds
        them (``None``: all) so that a file with 20,000 wrong values prints 51 lines."""
        shown = self.problems if limit is None else self.problems[:limit]
        out = []
        for p in shown:
            where = f"{self.file}:{p.line}:{p.column}" if p.line else self.file
            line = f"{where}: {p.json_path}: {p.message}" if p.path else f"{where}: {p.message}"
            out.append(printable(line))
        hidden = len(self.problems) - len(shown)
        if hidden:
            more = f"{self.file}: ... and {hidden} more problem{'s' if hidden > 1 else ''}"
            out.append(printable(more))
        return out


def printable(text: str) -> str:
    """``text`` on one line with control characters escaped: a problem quotes the file (its
    keys, its values), which may hold anything (a newline would forge a line, an escape
    sequence drive the terminal)."""
    text = _LINE_BREAKS.sub(" ", text)
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shorten(text: str, most: int = 60) -> str:
    """``repr`` of a value quoted in a message, cut so that a 1 MiB string stays one line."""
    return repr(text) if len(text) <= most else repr(text[:most]) + "..."


def read_document(path: str | Path, file: str) -> tuple[Any, Marks]:
    """The data in a workflow file and the position of each part of it: JSON for ``.json``
    files (with a JSON parser, so that everything JSON allows is read), YAML otherwise."""
    text = decode(read_bytes(path, file), file)
    if file.endswith(".json"):
        from cadenza.graph._spec_json import parse_json

        return parse_json(text, file)
    from cadenza.graph._spec_yaml import parse_yaml

    return parse_yaml(text, file)


def read_bytes(path: str | Path, file: str) -> bytes:
    """The file's bytes, refusing before reading anything that is not a regular file (a FIFO
    would block, a device never end) or is larger than :data:`MAX_FILE_BYTES`."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise _located(file, "cannot read: it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise _located(file, "cannot read: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_large(file)
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat
    except OSError as exc:
        raise _located(file, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(file)
    return data


def decode(data: bytes, file: str) -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped); any other encoding is refused with
    where it shows, since guessing one would read the workflow differently than written."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise _located(
                file,
                f"the file is {name} (it starts with a {name} byte-order mark); save it as UTF-8",
                1,
                1,
            )
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
        raise _located(
            file,
            f"not UTF-8: byte 0x{data[exc.start]:02x} is not part of a UTF-8 character (is the "
            "file Latin-1 or another encoding? save it as UTF-8)",
            line,
            column,
        ) from None


def check_yaml_characters(text: str, file: str) -> None:
    """Refuse a character YAML does not allow (NUL, other control characters) with where it
    is: libyaml's own error names only an offset."""
    found = _NOT_YAML.search(text)
    if found is None:
        return
    code = ord(found.group())
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - text.rfind("\n", 0, found.start())
    hint = " (is the file UTF-16? save it as UTF-8)" if code == 0 else ""
    raise _located(
        file,
        f"control character U+{code:04X} is not allowed in YAML{hint}; inside a double-quoted "
        f'string write it escaped ("\\u{code:04x}")',
        line,
        column,
    )


def _too_large(file: str) -> SpecError:
    return _located(
        file,
        f"the file is larger than {MAX_FILE_BYTES:,} bytes (1 MiB), the most a workflow file "
        "may be",
    )


def _located(
    file: str, message: str, line: int | None = None, column: int | None = None
) -> SpecError:
    return SpecError(file, [Problem((), message, line, column)])


# The problems of the bounds, the same from the YAML and the JSON reader.


def too_deep(file: str, line: int, column: int) -> SpecError:
    return _located(
        file,
        f"lists and mappings nest deeper than {MAX_DEPTH} levels, the most a workflow may",
        line,
        column,
    )


def too_many(file: str, line: int, column: int) -> SpecError:
    return _located(
        file,
        f"the document holds more than {MAX_NODES:,} values (each alias counted as the values it "
        "stands for), the most a workflow may",
        line,
        column,
    )


def too_long(file: str, digits: int, line: int, column: int) -> SpecError:
    return _located(
        file, f"an integer of {digits:,} digits; the most is {MAX_INT_DIGITS}", line, column
    )
