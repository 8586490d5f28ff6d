"""Hostile workflow files: each fails as located, one-line problems (never a traceback, an
exhausted stack or memory), within the bounds the README states; numbers are range-checked,
fields a step does not use are refused, references are checked without importing them."""

from __future__ import annotations

import math
import os
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.graph.spec_mutations import HOSTILE, check_document, laughs, mutated_document

from cadenza import HandlerRegistry
from cadenza.core.errors import DefinitionError
from cadenza.graph._spec_refs import UnimportedModel, unimported
from cadenza.graph.spec_compile import load_workflow_file
from cadenza.graph.spec_load import parse_text, read_spec
from cadenza.graph.spec_read import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, MAX_SHOWN, SpecError

INF, NAN = math.inf, math.nan


def write(folder: Path, data: bytes | str, suffix: str = ".yaml") -> Path:
    path = folder / f"wf{suffix}"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def registry(*names: str) -> HandlerRegistry:
    reg = HandlerRegistry()
    for name in names:
        reg.register(name, lambda state: None)
    return reg


def problems(path: Path, **options: Any) -> list[str]:
    """The problem lines of loading ``path`` (no import unless asked)."""
    options.setdefault("imports", False)
    options.setdefault("registry", registry("a", "b", "h"))
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, **options)
    return info.value.lines()


# -- the issue's files: one located line each, fast and small --------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_file_is_one_located_line(tmp_path: Path, name: str) -> None:
    data, suffix, where, message = HOSTILE[name]
    path = write(tmp_path, data, suffix)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        (line,) = problems(path)
    finally:
        took = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert line.startswith(f"{path}{where}"), line
    assert message in line, line
    assert peak < 100 * 2**20, f"{peak / 2**20:.1f} MiB"
    assert took < 5, f"{took:.1f} s (a hang detector, not a benchmark)"


def test_the_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    for levels in (9, 12):
        path = write(tmp_path, laughs(levels))
        tracemalloc.start()
        try:
            (line,) = problems(path)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert f"more than {MAX_NODES:,} values" in line
        assert peak < 5 * 2**20, "refused while counting, before building anything big"


def test_valid_json_that_yaml_refuses_is_read_as_json(tmp_path: Path) -> None:
    text = '{\t"name": "x",\r\n "description": "a\u009cb\u2028c",\n\t"steps": [{"name": "a"}]}'
    path = write(tmp_path, text, ".json")
    workflow = load_workflow_file(path, registry=registry("a"))
    assert workflow.description == "a\u009cb\u2028c"


def test_a_utf8_byte_order_mark_and_crlf_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfname: x\r\nsteps:\r\n  - {name: a, timout: 1}\r\n")
    (line,) = problems(path)
    assert line.startswith(f"{path}:3:15: $.steps[0].timout: unknown field"), line


@pytest.mark.parametrize(
    ("text", "suffix", "where", "message"),
    [
        ("name: x\n---\nname: y\n", ".yaml", ":2:1: ", "one YAML document"),
        ("name: x\n? [a]\n: b\n", ".yaml", ":2:3: ", "a key is a plain value"),
        ("name: x\nsteps: *nope\n", ".yaml", ":2:8: ", "alias *nope names no anchor"),
        ("name: !!int abc\n", ".yaml", ":1:7: ", "invalid YAML: cannot read 'abc' as int"),
        ("name: !!timestamp 2024-13-45\n", ".yaml", ":1:7: ", "as timestamp"),
        ("name: !!bool maybe\n", ".yaml", ":1:7: ", "as bool"),
        ("name: !!python/object/apply:os.system [echo]\n", ".yaml", ":1:7: ", "constructor"),
        ('{"name": "x", "steps": NaN}', ".json", ":1:24: ", "NaN and Infinity are not JSON"),
        ('{"name": "x", "name": "y"}', ".json", ":1:15: $.name: ", "duplicate key 'name'"),
        ('{"name": "x",}', ".json", ":1:14: ", "Expecting property name"),
        ('{"name": "x"} {}', ".json", ":1:15: ", "Extra data"),
        ("", ".json", ":1:1: ", "Expecting value"),
    ],
)
def test_documents_the_readers_refuse(
    tmp_path: Path, text: str, suffix: str, where: str, message: str
) -> None:
    path = write(tmp_path, text, suffix)
    (line,) = problems(path)
    assert line.startswith(f"{path}{where}") and message in line, line


def test_what_cannot_be_read_at_all(tmp_path: Path) -> None:
    (line,) = problems(tmp_path / "missing.yaml")
    assert line == f"{tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    (line,) = problems(folder)
    assert line == f"{folder}: cannot read: it is a directory"


# -- the bounds, at and past each ------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nesting_depth_bound(suffix: str) -> None:
    inside = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    parse_text(inside, "f", json_only=suffix == ".json")
    with pytest.raises(SpecError, match=f"nest deeper than {MAX_DEPTH}"):
        parse_text("[" + inside + "]", "f", json_only=suffix == ".json")


def test_an_alias_counts_the_depth_of_what_it_stands_for() -> None:
    deep = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    parse_text(f"a: &a {deep}\nb: [*a]\n", "f")
    with pytest.raises(SpecError, match=r"f:2:6: lists and mappings nest deeper"):
        parse_text(f"a: &a {deep}\nb: [[*a]]\n", "f")


def test_values_bound_counts_aliases_as_what_they_stand_for() -> None:
    items = ", ".join(["x"] * 99)  # a list of 100 values with itself
    under = (MAX_NODES - 200) // 100
    parse_text(f"a: &a [{items}]\nb: [{', '.join(['*a'] * under)}]\n", "f")
    with pytest.raises(SpecError, match=r"f:2:\d+: the document holds more than"):
        parse_text(f"a: &a [{items}]\nb: [{', '.join(['*a'] * (under + 5))}]\n", "f")
    with pytest.raises(SpecError, match=r"f:1:\d+: the document holds more than"):
        parse_text("[" + ",".join(["0"] * MAX_NODES) + "]", "f", json_only=True)


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("9" * MAX_INT_DIGITS, True),
        ("-" + "9" * MAX_INT_DIGITS, True),
        ("1_000_000", True),
        ("9" * (MAX_INT_DIGITS + 1), False),
        ("0x" + "f" * MAX_INT_DIGITS, False),
    ],
)
def test_integer_digits_bound(number: str, ok: bool) -> None:
    for text, json_only in ((f"a: {number}\n", False), (f'{{"a": {number}}}', True)):
        if json_only and not number.lstrip("-").isdigit():
            continue
        if ok:
            parse_text(text, "f", json_only=json_only)
        else:
            with pytest.raises(SpecError, match="digits; the most is 20"):
                parse_text(text, "f", json_only=json_only)


def test_anchors_aliases_and_merge_keys_within_the_bounds_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: x\nsteps:\n"
        "  - &base {name: a, timeout: 5, retry: &r {max_attempts: 2, initial_delay: 0}}\n"
        "  - {<<: *base, name: b, retry: *r}\n",
    )
    workflow = load_workflow_file(path, registry=registry("a", "b"))
    assert [s.policy.timeout for s in workflow.compile().graph.steps.values()] == [5, 5]


def test_problems_shown_are_bounded(tmp_path: Path) -> None:
    steps = "".join(f"  - {{name: s{i}, timout: 1}}\n" for i in range(120))
    path = write(tmp_path, "name: x\nsteps:\n" + steps)
    with pytest.raises(SpecError) as info:
        load_workflow_file(path, registry=registry())
    lines = str(info.value).split("\n")
    assert len(info.value.problems) == 120
    assert len(lines) == MAX_SHOWN + 1
    assert lines[-1] == f"{path}: ... and 70 more problems"
    assert all(line.startswith(f"{path}:") for line in lines)


def test_a_problem_quoting_control_characters_stays_one_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, '{"name": "x", "steps": [{"name": "a", "b\\nc\\u001b[31m\\u0085": 1}]}', ".json"
    )
    (line,) = problems(path)
    assert line.startswith(f"{path}:1:39: ") and "\n" not in line and "\x1b" not in line
    assert "\\x1b[31m" in line


# -- numbers in range, fields where they are used --------------------------------------------

BASE: dict[str, dict[str, Any]] = {
    "SEQUENTIAL": {"name": "a"},
    "PARALLEL": {"type": "PARALLEL", "name": "a"},
    "LOOP": {
        "type": "LOOP",
        "name": "a",
        "body": [{"name": "b"}],
        "until": "n > 1",
        "max_iterations": 3,
    },
    "WAIT": {"type": "WAIT", "name": "a", "seconds": 1},
    "HUMAN_APPROVAL": {"type": "HUMAN_APPROVAL", "name": "a", "approvers": ["boss"]},
    "REACT": {"type": "REACT", "name": "a", "model": "m"},
    "ORCHESTRATOR": {
        "type": "ORCHESTRATOR",
        "name": "a",
        "planner": "p",
        "workers": [{"name": "w", "capability": "c", "handler": "h"}],
    },
    "WEBHOOK": {"type": "WEBHOOK", "name": "a", "endpoint": "http://x"},
    "ROUTER": {"type": "CONDITIONAL", "name": "a", "conditions": "n > 1", "then": "a"},
    "ROUTES": {"type": "CONDITIONAL", "name": "a", "routes": {"a": "n > 1"}},
}

# (step kind, field, values refused, the most accepted)
RANGES: list[tuple[str, str, list[Any], Any]] = [
    ("SEQUENTIAL", "timeout", [0, -1, 31_536_001, INF, NAN], 31_536_000),
    ("SEQUENTIAL", "retry", [-1, -5, 101], 100),
    ("SEQUENTIAL", "retry", [{"max_attempts": 0}, {"max_attempts": 102}], {"max_attempts": 101}),
    ("SEQUENTIAL", "retry", [{"initial_delay": -1}, {"initial_delay": INF}], {"initial_delay": 0}),
    ("SEQUENTIAL", "retry", [{"backoff": 0.5}, {"backoff": 11}, {"backoff": NAN}], {"backoff": 10}),
    ("SEQUENTIAL", "retry", [{"max_delay": 1e9}, {"jitter": 1.5}, {"jitter": NAN}], {"jitter": 1}),
    (
        "SEQUENTIAL",
        "bulkhead",
        [{"name": "b", "limit": 0}, {"name": "b", "limit": 10_001}],
        {"name": "b", "limit": 10_000},
    ),
    ("PARALLEL", "max_concurrent", [0, 10_001], 10_000),
    ("LOOP", "max_iterations", [0, 100_001], 100_000),
    ("WAIT", "seconds", [-1, 31_536_001, INF, NAN], 0),
    ("HUMAN_APPROVAL", "quorum", [0, 1001], 1000),
    ("HUMAN_APPROVAL", "timeout", [0, INF], 31_536_000),
    ("REACT", "max_steps", [0, 1001], 1000),
    ("REACT", "max_iterations", [0, 1001], 1000),
    ("REACT", "token_budget", [0, 100_000_001], 100_000_000),
    ("REACT", "temperature", [-0.1, 2.5, NAN, INF], 2),
    ("ORCHESTRATOR", "max_subtasks", [0, 1001], 1000),
    ("ORCHESTRATOR", "max_concurrent", [0, 10_001], 10_000),
]


def _spec_file(folder: Path, kind: str, **fields: Any) -> Path:
    step = {**BASE[kind], **fields}
    return write(folder, yaml.safe_dump({"name": "x", "steps": [step]}, sort_keys=False))


@pytest.mark.parametrize(
    ("kind", "field", "bad", "most"), RANGES, ids=[f"{r[0]}.{r[1]}" for r in RANGES]
)
def test_numbers_are_range_checked(
    tmp_path: Path, kind: str, field: str, bad: list[Any], most: Any
) -> None:
    read_spec(_spec_file(tmp_path, kind, **{field: most}))
    for value in bad:
        with pytest.raises(SpecError) as info:
            read_spec(_spec_file(tmp_path, kind, **{field: value}))
        assert any(p.path[:3] == ("steps", 0, field) for p in info.value.problems), (
            value,
            str(info.value),
        )


@pytest.mark.parametrize(
    ("key", "bad", "most"),
    [
        ("timeout", [0, -1, INF, NAN, 31_536_001], 31_536_000),
        ("max_parallel_steps", [0, 10_001], 10_000),
        ("max_retries", [-1, 101], 100),
    ],
)
def test_config_numbers_are_range_checked(
    tmp_path: Path, key: str, bad: list[Any], most: Any
) -> None:
    def document(value: Any) -> Path:
        return write(
            tmp_path,
            yaml.safe_dump({"name": "x", "config": {key: value}, "steps": [{"name": "a"}]}),
        )

    load_workflow_file(document(most), registry=registry("a"))
    for value in bad:
        lines = problems(document(value))
        assert any(f"$.config.{key}: " in line for line in lines), lines


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("WAIT", {"retry": 2}, "'retry' applies to"),
        ("WAIT", {"timeout": 5}, "'timeout' applies to"),
        ("HUMAN_APPROVAL", {"retry": 1}, "not HUMAN_APPROVAL"),
        ("PARALLEL", {"timeout": 5}, "not PARALLEL"),
        ("PARALLEL", {"handler": "h"}, "'handler' applies to"),
        ("LOOP", {"retry": 1}, "not LOOP"),
        ("ORCHESTRATOR", {"handler": "h"}, "not ORCHESTRATOR"),
        ("REACT", {"breaker": "b"}, "'breaker' applies to"),
        ("WEBHOOK", {"fallback": "h"}, "'fallback' applies to"),
        ("WEBHOOK", {"bulkhead": {"name": "b", "limit": 1}}, "'bulkhead' applies to"),
        ("WEBHOOK", {"output": {"a": "b"}}, "'output' maps result keys"),
        ("SEQUENTIAL", {"method": "POST"}, "'method' applies to WEBHOOK"),
        ("SEQUENTIAL", {"on_failure": "fail_fast"}, "'on_failure' applies to PARALLEL"),
        ("ROUTER", {"handler": "h"}, "guards its handler"),
        ("ROUTER", {"timeout": 3}, "guards its handler"),
        ("ROUTER", {"default": "a"}, "'default' goes with 'routes'"),
        ("ROUTES", {"match": "any"}, "'match' goes with 'conditions'"),
    ],
)
def test_a_field_the_step_does_not_use_is_refused_at_the_field(
    tmp_path: Path, kind: str, fields: dict[str, Any], message: str
) -> None:
    path = _spec_file(tmp_path, kind, **fields)
    with pytest.raises(SpecError) as info:
        read_spec(path)
    (problem,) = info.value.problems
    assert message in problem.message
    assert problem.path == ("steps", 0, next(iter(fields))), problem


def test_agent_fields_on_a_worker_with_a_handler_are_refused(tmp_path: Path) -> None:
    worker = {"name": "w", "capability": "c", "handler": "h", "tools": ["t"]}
    path = _spec_file(tmp_path, "ORCHESTRATOR", workers=[worker])
    with pytest.raises(SpecError, match="'tools' applies to a WORKER with a 'model'"):
        read_spec(path)


# -- references: their syntax, and checking them without importing ---------------------------

BAD_HANDLERS = [
    ":",
    "../../evil:fn",
    "a:b:c",
    "pkg.mod:",
    ":fn",
    "pkg..mod:fn",
    "pkg/mod:fn",
    "mod:fn.attr",
    "",
    " ",
    "../evil",
    "two words",
]


@pytest.mark.parametrize("ref", BAD_HANDLERS)
@pytest.mark.parametrize("imports", [True, False])
def test_a_malformed_handler_reference_is_located(tmp_path: Path, ref: str, imports: bool) -> None:
    path = write(tmp_path, yaml.safe_dump({"name": "x", "steps": [{"name": "a", "handler": ref}]}))
    (line,) = problems(path, imports=imports)
    assert line.startswith(f"{path}:3:3: $.steps[0].handler: "), line
    assert "is not a handler" in line


@pytest.mark.parametrize(
    ("step", "where", "message"),
    [
        ({"name": "a", "compensate": "../x:y"}, "$.steps[0].compensate", "not a handler reference"),
        ({"name": "a", "breaker": "b", "fallback": ":"}, "$.steps[0].fallback", "not a handler"),
        (
            {"type": "PARALLEL", "name": "p", "branches": ["a", "a:"]},
            "$.steps[0].branches[1]",
            "not a handler",
        ),
        (
            {"type": "REACT", "name": "r", "model": "../../evil:fn"},
            "$.steps[0].model",
            "not a model reference",
        ),
        (
            {"type": "REACT", "name": "r", "model": "m", "tools": ["/bin/sh:x"]},
            "$.steps[0].tools[0]",
            "not a handler",
        ),
        (
            {"type": "REACT", "name": "r", "model": "scripted:"},
            "$.steps[0].model",
            "scripted: needs a file",
        ),
    ],
)
def test_malformed_references_everywhere(
    tmp_path: Path, step: dict[str, Any], where: str, message: str
) -> None:
    path = write(tmp_path, yaml.safe_dump({"name": "x", "handlers": "mods", "steps": [step]}))
    lines = problems(path, imports=False)
    assert any(f"{where}: " in line and message in line for line in lines), lines


DOTTED = "write a dotted Python name (package.module)"


def test_a_malformed_reducer_or_module_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nhandlers: [ok_mod, ../evil]\nsteps: [{name: a}]\n")
    lines = problems(path, imports=False)
    assert lines == [f"{path}:2:20: $.handlers[1]: '../evil' is not a module name: {DOTTED}"]
    path = write(
        tmp_path, "name: x\nstate:\n  log: {type: list, reducer: 'a:'}\nsteps: [{name: a}]\n"
    )
    (line,) = problems(path, imports=False)
    assert line.startswith(f"{path}:3:21: $.state.log.reducer: 'a:' is not a handler reference")
    (line,) = problems(write(tmp_path, "name: x\nsteps: [{name: a}]\n"), handler_modules=["../x"])
    assert line == f"{path}: handler module: '../x' is not a module name: {DOTTED}"


def _spy(folder: Path) -> str:
    """A handler module that leaves a file behind when imported."""
    name = f"spy_{uuid.uuid4().hex}"
    (folder / f"{name}.py").write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_suffix('.imported').touch()\n\n"
        "def fn(state, ctx=None):\n"
        "    return None\n"
    )
    return name


def test_imports_only_when_asked_or_when_handler_modules_are_named(tmp_path: Path) -> None:
    spy = _spy(tmp_path)
    imported = tmp_path / f"{spy}.imported"
    named = write(
        tmp_path,
        f"name: x\nhandlers: {spy}\nsteps: [{{name: a, handler: '{spy}:fn'}}, {{name: b}}]\n",
    )
    load_workflow_file(named, registry=registry(), imports=False)  # 'b': a module may register it
    assert not imported.exists()
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(f"name: x\nsteps: [{{name: a, handler: '{spy}:fn'}}]\n")
    load_workflow_file(unnamed, registry=registry(), imports=None)
    assert not imported.exists(), "no handler module named: nothing is imported by default"
    load_workflow_file(named, registry=registry("b"), imports=None)
    assert imported.exists(), "handler modules named: imported by default"


def test_without_imports_an_unknown_name_is_an_error_only_if_nothing_could_register_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "name: x\nsteps: [{name: nobody}]\n")
    (line,) = problems(path, registry=registry())
    assert "no handler named 'nobody'" in line
    path = write(tmp_path, "name: x\nhandlers: somewhere\nsteps: [{name: nobody}]\n")
    load_workflow_file(path, registry=registry(), imports=False)


def test_models_and_tools_are_not_loaded_without_imports(tmp_path: Path) -> None:
    step = {
        "type": "REACT",
        "name": "r",
        "model": "nowhere_pkg:model",
        "tools": ["nowhere_pkg:search", "nowhere_pkg:fetch"],
    }
    path = write(tmp_path, yaml.safe_dump({"name": "x", "steps": [step]}))
    workflow = load_workflow_file(path, registry=registry(), imports=False)
    agent = workflow.compile().graph.steps["r"].agent
    assert isinstance(agent.model, UnimportedModel)
    assert [t.name for t in agent.tools] == ["unimported_0", "unimported_1"]
    lines = problems(path, registry=registry(), imports=True)
    assert any("$.steps[0].model: " in line for line in lines), lines


def test_a_stand_in_fails_if_it_is_ever_run() -> None:
    with pytest.raises(DefinitionError, match=r"'pkg\.mod:fn' was not imported"):
        unimported("pkg.mod:fn")({}, None)


# -- a generated corpus: the examples mutated ------------------------------------------------

# ~6 s at the default; CADENZA_FUZZ_EXAMPLES=20000 for a longer hunt (bench/spec_fuzz.py runs
# the same corpus with timings and memory).
FUZZ_EXAMPLES = int(os.environ.get("CADENZA_FUZZ_EXAMPLES", "1000"))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_mutated_examples_load_or_fail_as_located_lines(fuzz_dir: Path) -> None:
    """At least FUZZ_EXAMPLES documents; each loads, or fails with a SpecError of at most
    MAX_SHOWN + 1 lines that each start with the file name; none hangs."""
    seen = {"documents": 0}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(rng=st.randoms(use_true_random=False))
    def load(rng: Any) -> None:
        data, suffix, mutations = mutated_document(rng)
        path = write(fuzz_dir, data, suffix)
        started = time.perf_counter()
        check_document(path)
        took = time.perf_counter() - started
        assert took < 5, f"{took:.1f} s for {mutations}"
        seen["documents"] += 1

    load()
    assert seen["documents"] >= FUZZ_EXAMPLES
