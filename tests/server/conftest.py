"""The API tests' fixtures (:mod:`tests.server.fixtures`), when the ``server`` extra is
installed; without it these tests are not collected, and the report header says why."""

from __future__ import annotations

import importlib.util

import pytest

MISSING = [name for name in ("fastapi", "jwt") if importlib.util.find_spec(name) is None]

if MISSING:
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.server.fixtures import *  # noqa: F403 (fixtures are found by their names here)


def pytest_report_header(config: pytest.Config) -> str | None:
    if MISSING:
        return "tests/server: not run, the server extra is not installed: pip install '.[server]'"
    return None
