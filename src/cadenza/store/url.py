"""Which store a string names: a SQLite path, ``sqlite:///path``, ``postgresql://...`` or
``memory``; the one place that reads ``Engine(store)`` and ``--store``.

A string is only taken as a file path when it is not a URL: ``mysql://...`` or a misspelt
scheme is refused by name instead of becoming a SQLite file called ``mysql:``, and a read-only
command opens a store only where one exists instead of leaving an empty database behind."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from cadenza.core.errors import StoreError

if TYPE_CHECKING:
    from cadenza.store.base import Store

#: What ``--store`` accepts, for messages.
FORMS = "a SQLite path, sqlite:///PATH, postgresql://USER@HOST/DB or memory"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES = ("postgres", "postgresql")


def open_store(where: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """The store ``where`` names, not opened yet.

    ``None`` is the embedded default (``$CADENZA_DB``, else ``./cadenza.db``); a path is a
    SQLite file; ``sqlite:///relative.db``, ``sqlite:////absolute.db`` and ``sqlite:PATH`` name
    one too; ``postgres://``/``postgresql://`` URLs a PostgreSQL database (the ``postgres``
    extra); ``memory`` a :class:`MemoryStore`. With ``create=False`` a SQLite file that does not
    exist is a :class:`StoreError` instead of a new, empty database: for commands that only
    read or check what is stored."""
    kind, target = parse_store_url(where)
    if kind == "memory":
        from cadenza.store.memory import MemoryStore

        return MemoryStore()
    if kind == "postgres":
        assert target is not None  # a postgres URL always names its target
        return _postgres(target)
    from cadenza.store.sqlite import SQLiteStore

    path = target if target is not None else sqlite_default_path()
    if not create and path != ":memory:":
        if os.path.isdir(path):
            raise StoreError(f"the store {path!r} is a directory, not a SQLite file")
        if not os.path.exists(path):
            raise StoreError(f"no store at {path!r}: no such file (a run creates it)")
    return SQLiteStore(path)


def parse_store_url(where: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """``(kind, target)``: ``("sqlite", path)`` (``None``: the default path), ``("postgres",
    url)`` or ``("memory", None)``; a URL of any other scheme is a :class:`StoreError` naming
    the scheme only (the rest may hold a password)."""
    if where is None:
        return "sqlite", None
    if not isinstance(where, str):
        return "sqlite", os.fspath(where)
    if where in ("memory", "memory://"):
        return "memory", None
    url = _SCHEME.match(where)
    if url is not None:
        scheme = url[1].lower()
        if scheme in _POSTGRES:
            return "postgres", where
        if scheme == "sqlite":
            return "sqlite", _sqlite_url_path(where, where[url.end() :])
        raise StoreError(f"unknown store scheme '{url[1]}://': use {FORMS}")
    if where[:7].lower() == "sqlite:":
        return "sqlite", _nonempty(where, where[7:])
    if not where:
        raise StoreError(f"the store is empty: use {FORMS}")
    return "sqlite", where


def sqlite_default_path() -> str:
    """Where the SQLite store is when none is named: ``$CADENZA_DB``, else ``./cadenza.db``."""
    from cadenza.store.sqlite import DEFAULT_PATH, ENV_PATH

    return os.environ.get(ENV_PATH) or DEFAULT_PATH


def _sqlite_url_path(url: str, rest: str) -> str:
    """The path of ``sqlite://`` + ``rest`` as SQLAlchemy reads it: ``sqlite:///x.db`` is the
    relative ``x.db``, ``sqlite:////x.db`` the absolute ``/x.db``; a host or query is refused
    rather than becoming part of a file name."""
    if not rest.startswith("/"):
        raise StoreError(
            "a sqlite:// URL names no host: sqlite:///relative.db or sqlite:////absolute.db"
        )
    if "?" in rest:
        raise StoreError("a sqlite:/// URL takes no parameters (?...): name the file only")
    return _nonempty(url, rest[1:])


def _nonempty(url: str, path: str) -> str:
    if not path:
        raise StoreError(f"{url!r} names no file: sqlite:///PATH")
    return path


def _postgres(url: str) -> Store:
    try:
        from cadenza.store.postgres import PostgresStore
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("psycopg", "psycopg_pool"):
            raise
        raise StoreError(
            "a postgresql:// store needs the PostgreSQL driver: pip install 'cadenza[postgres]'"
        ) from None
    return PostgresStore(url)
