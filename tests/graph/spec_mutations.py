"""A corpus of hostile workflow files: the example workflows, mutated at the structure level
(wrong types, unknown fields, out-of-range numbers, fields on the wrong step type, shared
values that become YAML aliases) and at the text and byte level (deep nesting, "billion
laughs" aliases, recursive aliases, huge numbers, NULs and control characters, invalid
UTF-8, other encodings, truncation, inflation past the size bound).

Every random choice comes from one ``random.Random``: the hypothesis test hands in one whose
choices hypothesis draws (and shrinks), ``bench/spec_fuzz.py`` a seeded one, so both run the
same corpus. :func:`check_document` is the property: loading any document either succeeds or
raises a :class:`SpecError` of a few lines, each starting with the file name.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cadenza import HandlerRegistry
from cadenza.graph.spec import StepSpec, StepType
from cadenza.graph.spec_compile import load_workflow_file
from cadenza.graph.spec_read import MAX_FILE_BYTES, MAX_SHOWN, SpecError

EXAMPLES = Path(__file__).parents[2] / "examples"
SEEDS: list[tuple[str, bytes]] = [
    (p.name, p.read_bytes())
    for p in [*sorted(EXAMPLES.glob("*.yaml")), *sorted((EXAMPLES / "brief").glob("*.json"))]
]
FIELDS = sorted(f.alias or name for name, f in StepSpec.model_fields.items())


def mutated_document(rng: random.Random) -> tuple[bytes, str, list[str]]:
    """A document, the suffix of its file (``.yaml`` or ``.json``) and the mutations made."""
    name, text = rng.choice(SEEDS)
    suffix = name[name.rindex(".") :]
    if rng.random() < 0.1:  # a YAML file named .json, or JSON read as YAML
        suffix = ".yaml" if suffix == ".json" else ".json"
    done: list[str] = []
    if rng.random() < 0.6:
        text = _restructure(rng, text, suffix, done)
    for _ in range(rng.choice([0, 0, 1]) if done else rng.randint(1, 3)):
        op = rng.choice(_TEXT_OPS if rng.random() < 0.5 else _BYTE_OPS)
        done.append(op.__name__)
        text = op(rng, text, suffix)
    return text, suffix, done


def check_document(path: Path) -> str:
    """Load ``path`` as ``cadenza validate --no-import`` does: ``"ok"`` or ``"error"``, and
    an AssertionError (or the unexpected exception itself) for anything else."""
    try:
        workflow = load_workflow_file(path, registry=HandlerRegistry(), imports=False)
        workflow.compile()
    except SpecError as exc:
        lines = str(exc).split("\n")
        assert 1 <= len(lines) <= MAX_SHOWN + 1, f"{len(lines)} lines"
        for line in lines:
            assert line.startswith(f"{path}:"), line
            assert line.splitlines() == [line], f"a line that splits: {line!r}"
        return "error"
    return "ok"


# -- structure -----------------------------------------------------------------------------


def _restructure(rng: random.Random, text: bytes, suffix: str, done: list[str]) -> bytes:
    data = yaml.safe_load(text)  # the seeds are the project's own, trusted examples
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(_DATA_OPS)
        done.append(op.__name__)
        data = op(rng, data)
    try:
        if suffix == ".json":
            return json.dumps(data, indent=rng.choice([None, 2])).encode()
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    except (ValueError, TypeError, RecursionError, yaml.YAMLError):
        done.append("unserializable")
        return text


def _nodes(data: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) for every value under ``data``, depth first."""
    out: list[tuple[Any, Any]] = []
    stack, seen = [data], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            out.append((node, key))
            if isinstance(value, dict | list):
                stack.append(value)
    return out


def _hostile_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            -5,
            -1,
            0,
            1,
            2**63,
            10 ** rng.randint(15, 40),
            -(10**25),
            float("inf"),
            float("-inf"),
            float("nan"),
            1e308,
            5e-324,
            0.5,
            True,
            False,
            None,
            "",
            " ",
            ":",
            "../../evil:fn",
            "a:b:c",
            "os:system",
            "pkg.mod:fn",
            "no_such_handler",
            "scripted:",
            "scripted:../../etc/passwd",
            "openai:",
            "x" * rng.randint(0, 300),
            "\x00\u009c\u2028",
            "amount > ",
            "__import__('os')",
            [],
            {},
            [1, "a", None],
            {"a": {"b": {"c": []}}},
            {"max_attempts": rng.choice([0, -1, 10**6, 3])},
            rng.choice(FIELDS),
            rng.choice(list(StepType)).value.lower(),
        ]
    )


def set_value(rng: random.Random, data: Any) -> Any:
    nodes = _nodes(data) if isinstance(data, dict | list) else []
    if not nodes:
        return _hostile_value(rng)
    container, key = rng.choice(nodes)
    container[key] = _hostile_value(rng)
    return data


def unknown_field(rng: random.Random, data: Any) -> Any:
    dicts = (
        [c for c, _ in _nodes(data) if isinstance(c, dict)] if isinstance(data, dict | list) else []
    )
    if isinstance(data, dict):
        dicts.append(data)
    if dicts:
        key = rng.choice(["timout", "handlr", "<<", "", "x" * 200, 7, "__proto__", *FIELDS])
        rng.choice(dicts)[key] = _hostile_value(rng)
    return data


def step_field(rng: random.Random, data: Any) -> Any:
    """Give a step a field, often one its type does not use, with an in- or out-of-range value."""
    steps = [c[k] for c, k in _nodes(data) if isinstance(c[k], dict) and "name" in c[k]]
    if steps:
        step = rng.choice(steps)
        step[rng.choice(FIELDS)] = (
            _hostile_value(rng)
            if rng.random() < 0.7
            else rng.choice([30, 3, 0.1, "x", ["a"], "fan"])
        )
        if rng.random() < 0.3:
            step["type"] = rng.choice([*StepType, "PARALEL", "task", 5]).__str__()
    return data


def share(rng: random.Random, data: Any) -> Any:
    """Make one value stand in two places: a YAML alias once dumped (a cycle, sometimes)."""
    nodes = _nodes(data) if isinstance(data, dict | list) else []
    if len(nodes) >= 2:
        (c1, k1), (c2, k2) = rng.sample(nodes, 2)
        c2[k2] = c1[k1] if rng.random() < 0.8 else c1
    return data


def multiply(rng: random.Random, data: Any) -> Any:
    steps = data.get("steps") if isinstance(data, dict) else data
    times = rng.choice([2, 10, 100, 3000])
    if isinstance(steps, list) and steps and len(steps) * times <= 30_000:
        steps[:] = steps * times
    return data


def delete(rng: random.Random, data: Any) -> Any:
    nodes = _nodes(data) if isinstance(data, dict | list) else []
    if nodes:
        container, key = rng.choice(nodes)
        del container[key]
    return data


_DATA_OPS: list[Callable[[random.Random, Any], Any]] = [
    set_value,
    unknown_field,
    step_field,
    step_field,
    share,
    multiply,
    delete,
]


# -- text -----------------------------------------------------------------------------------


def deep_nesting(rng: random.Random, text: bytes, suffix: str) -> bytes:
    depth = rng.choice([rng.randint(1, 70), 5_000, 100_000])
    if suffix == ".json":
        head, tail = rng.choice([('{"a": ', "}"), ("[", "]")])
        return head.encode() * depth + text + tail.encode() * depth
    return text + b"\nzz_deep: " + b"[" * depth + b"]" * depth + b"\n"


def billion_laughs(rng: random.Random, text: bytes, suffix: str) -> bytes:
    levels, width = rng.randint(2, 12), rng.randint(2, 10)
    lines = [b"l0: &l0 [x, {name: a, timeout: 1}]"]
    for i in range(1, levels + 1):
        lines.append(b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * width) + b"]")
    if rng.random() < 0.5:
        lines.append(b"steps: *l%d" % levels)
    return text + b"\n" + b"\n".join(lines) + b"\n"


def recursive_alias(rng: random.Random, text: bytes, suffix: str) -> bytes:
    return text + b"\n" + rng.choice([b"zz: &r [*r]", b"zz: &r {a: *r}", b"steps: &s [*s]"]) + b"\n"


def huge_number(rng: random.Random, text: bytes, suffix: str) -> bytes:
    digits = rng.choice([rng.randint(15, 25), 4_301, 5_000, 200_000])
    number = rng.choice([b"9" * digits, b"-" + b"9" * digits, b"0x" + b"f" * digits])
    return _replace_number(rng, text, number)


def special_float(rng: random.Random, text: bytes, suffix: str) -> bytes:
    word = rng.choice([b".inf", b"-.inf", b".nan", b"1e999", b"1.0e+999", b"NaN", b"Infinity"])
    return _replace_number(rng, text, word)


def _replace_number(rng: random.Random, text: bytes, number: bytes) -> bytes:
    spots = [
        i
        for i in range(1, len(text))
        if text[i : i + 1].isdigit() and not text[i - 1 : i].isdigit()
    ]
    if not spots:
        return text + b"\nzz: " + number + b"\n"
    at = rng.choice(spots)
    end = at
    while text[end : end + 1].isdigit() or text[end : end + 1] == b".":
        end += 1
    return text[:at] + number + text[end:]


def tabs(rng: random.Random, text: bytes, suffix: str) -> bytes:
    return text.replace(b"\n  ", b"\n\t", rng.randint(1, 50))


_TEXT_OPS = [deep_nesting, billion_laughs, recursive_alias, huge_number, special_float, tabs]


# -- bytes ----------------------------------------------------------------------------------

_CONTROL = [bytes([c]) for c in [*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]] + [
    chr(c).encode() for c in [0x85, 0x9C, 0x2028, 0xFEFF, 0xFFFE, 0x1F600]
]
_INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
    b"\xe9",
]


def _at(rng: random.Random, text: bytes) -> int:
    return rng.randint(0, len(text))


def insert_bytes(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + rng.randbytes(rng.randint(1, 8)) + text[at:]


def delete_bytes(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + text[at + rng.randint(1, 40) :]


def replace_byte(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + bytes([rng.randrange(256)]) + text[at + 1 :]


def insert_nul(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + b"\x00" + text[at:]


def insert_control(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + rng.choice(_CONTROL) + text[at:]


def control_in_string(rng: random.Random, text: bytes, suffix: str) -> bytes:
    """A control character inside a quoted string (valid JSON for U+0080 and up)."""
    quote = text.find(b'"', rng.randint(0, max(len(text) - 1, 0)))
    if quote < 0:
        return insert_control(rng, text, suffix)
    return text[: quote + 1] + rng.choice(_CONTROL) + text[quote + 1 :]


def invalid_utf8(rng: random.Random, text: bytes, suffix: str) -> bytes:
    at = _at(rng, text)
    return text[:at] + rng.choice(_INVALID_UTF8) + text[at:]


def byte_order_mark(rng: random.Random, text: bytes, suffix: str) -> bytes:
    return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"]) + text


def other_encoding(rng: random.Random, text: bytes, suffix: str) -> bytes:
    decoded = text.decode("utf-8", "replace").replace("a", "\u00e9", 1)
    encoding = rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])
    return decoded.encode(encoding, "replace")


def truncate(rng: random.Random, text: bytes, suffix: str) -> bytes:
    return text[: _at(rng, text)]


def inflate(rng: random.Random, text: bytes, suffix: str) -> bytes:
    """Repeat a slice: sometimes past the size bound."""
    at = _at(rng, text)
    piece = text[at : at + rng.randint(1, 200)] or b"x"
    times = rng.choice([2, 50, MAX_FILE_BYTES // len(piece) + 1])
    return text[:at] + piece * times + text[at:]


_BYTE_OPS = [
    insert_bytes,
    delete_bytes,
    replace_byte,
    insert_nul,
    insert_control,
    control_in_string,
    invalid_utf8,
    byte_order_mark,
    other_encoding,
    truncate,
    inflate,
]


# -- the hostile files of the issue, one each ------------------------------------------------


def laughs(levels: int, width: int = 9) -> bytes:
    """A "billion laughs" document: each level a list of aliases of the level below
    (``width ** levels`` values once expanded, from a few hundred bytes)."""
    lines = [b"name: lol", b"l0: &l0 [" + b", ".join([b"lol"] * width) + b"]"]
    for i in range(1, levels):
        lines.append(b"l%d: &l%d [" % (i, i) + b",".join([b"*l%d" % (i - 1)] * width) + b"]")
    return b"\n".join([*lines, b"steps: [{name: a}]", b""])


#: name -> (content, suffix, where the one problem is (":LINE:COL: " or ": "), its message).
HOSTILE: dict[str, tuple[bytes, str, str, str]] = {
    "latin-1": (b"name: caf\xe9\nsteps: [{name: a}]\n", ".yaml", ":1:10: ", "not UTF-8: byte 0xe9"),
    "utf-16": (
        "name: x\nsteps: [{name: a}]\n".encode("utf-16"),
        ".yaml",
        ":1:1: ",
        "the file is UTF-16",
    ),
    "utf-16 without a byte-order mark": (
        "name: x\nsteps: [{name: a}]\n".encode("utf-16-le"),
        ".json",
        ":1:1: ",
        "invalid JSON: Expecting value (is the file UTF-16? save it as UTF-8)",
    ),
    "nul": (b"name: x\x00\nsteps: [{name: a}]\n", ".yaml", ":1:8: ", "control character U+0000"),
    "control character": (
        'name: x\nsteps: [{name: a, description: "\u009c"}]\n'.encode(),
        ".yaml",
        ":2:33: ",
        "control character U+009C is not allowed in YAML",
    ),
    "nul in a json string": (
        b'{"name": "x\x00", "steps": [{"name": "a"}]}',
        ".json",
        ":1:12: ",
        "invalid JSON: Invalid control character at",
    ),
    "recursive alias": (b"name: x\nsteps: &s [*s]\n", ".yaml", ":2:12: ", "alias *s is inside"),
    "recursive mapping": (
        b"name: x\nsteps: [&m {name: a, next: *m}]\n",
        ".yaml",
        ":2:28: ",
        "alias *m is inside",
    ),
    "json nested 5,000 deep": (
        b"[" * 5000 + b"]" * 5000,
        ".json",
        ":1:65: ",
        "nest deeper than 64",
    ),
    "yaml nested 5,000 deep": (
        b"name: x\nsteps: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        ".yaml",
        ":2:",
        "nesting depth",
    ),
    "yaml nested 65 deep": (
        b"name: x\nsteps: " + b"[" * 65 + b"]" * 65 + b"\n",
        ".yaml",
        ":2:71: ",
        "nest deeper than 64",
    ),
    "a 5,000-digit integer": (
        b"name: x\nsteps: [{name: a, timeout: " + b"9" * 5000 + b"}]\n",
        ".yaml",
        ":2:28: ",
        "an integer of 5,000 digits; the most is 20",
    ),
    "a 5,000-digit json integer": (
        b'{"name": "x", "steps": [{"name": "a", "timeout": ' + b"9" * 5000 + b"}]}",
        ".json",
        ":1:50: ",
        "an integer of 5,000 digits; the most is 20",
    ),
    "handler ':'": (
        b"name: x\nsteps: [{name: a, handler: ':'}]\n",
        ".yaml",
        ":2:19: ",
        "$.steps[0].handler: ':' is not a handler reference",
    ),
    "handler '../../evil:fn'": (
        b"name: x\nsteps: [{name: a, handler: '../../evil:fn'}]\n",
        ".yaml",
        ":2:19: ",
        "$.steps[0].handler: '../../evil:fn' is not a handler reference",
    ),
    "billion laughs": (laughs(9), ".yaml", ":", "more than 20,000 values"),
    "retry -5 on a WAIT": (
        b"name: x\nsteps: [{type: WAIT, name: a, seconds: 1, retry: -5}]\n",
        ".yaml",
        ":2:43: ",
        "$.steps[0].retry: Input should be greater than or equal to 0",
    ),
    "retry on a HUMAN_APPROVAL": (
        b"name: x\nsteps: [{type: HUMAN_APPROVAL, name: a, approvers: [boss], retry: 2}]\n",
        ".yaml",
        ":2:60: ",
        "$.steps[0].retry: 'retry' applies to",
    ),
    "a file over 1 MiB": (
        b"name: x\nsteps: [{name: a}]\n" + b"#" * MAX_FILE_BYTES,
        ".yaml",
        ": ",
        "the file is larger than 1,048,576 bytes",
    ),
}
