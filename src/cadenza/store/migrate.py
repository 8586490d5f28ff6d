"""Schema migrations: numbered ``.sql`` files shipped as package data.

Each dialect has a folder ``cadenza/store/schema/<dialect>/`` holding ``NNNN_name.sql`` files.
They are applied in order, each once, and recorded in the ``schema_version`` table; how they are
applied (locking, splitting into statements) is the store's business, see
:func:`cadenza.store._sqlite_migrate.migrate_sqlite`. Other files in the folder (``schema.sql``, the
snapshot of the resulting schema that the tests compare against) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

from cadenza.core.errors import StoreError

_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str) -> list[Migration]:
    """The migrations for ``dialect`` in order; versions must run 1, 2, 3, … without gaps."""
    folder = files("cadenza.store").joinpath("schema", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")),
        )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreError(
                f"schema/{dialect}: migration {expected:04d} is missing or duplicated "
                f"(found {migration.version:04d}_{migration.name}.sql)"
            )
    if not found:
        raise StoreError(f"schema/{dialect}: no migrations found (is the package data installed?)")
    return found
