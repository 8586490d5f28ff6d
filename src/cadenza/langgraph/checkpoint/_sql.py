"""The checkpointers' statements for SQLite and PostgreSQL, by name: those of the checkpoint
tables only. A thread's run and its events are the store's, written through its run log
(:mod:`cadenza.store.runlog`) with the store's own statements.

Parameters are named (``:name`` for SQLite, ``%(name)s`` for psycopg). The tables come from
migration 0004 of each dialect. A list parameter is a JSON array for SQLite (read with
``json_each``) and an array for PostgreSQL: :meth:`Dialect.array` makes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

__all__ = ["POSTGRES", "SQLITE", "TABLES", "Dialect", "check_filter_key"]

_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, checkpoint, "
    "metadata, due"
)
_BLOB_COLUMNS = "thread_id, checkpoint_ns, channel, version, kind, base, tag, type, blob"
_WRITE_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"
)
# A metadata filter key: what LangGraph's own savers accept.
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")

#: The deepest a blob chain is followed (a guard: chains are at most ``full_every`` long).
CHAIN_LIMIT = 100_000


def check_filter_key(key: str) -> None:
    """Refuse a metadata filter key that LangGraph's own savers would refuse."""
    if not isinstance(key, str) or not _FILTER_KEY.match(key):
        raise ValueError(f"metadata filter key {key!r}: use letters, digits, '_', '.' and '-' only")


def _named(sql: str, mark: str) -> str:
    """Turn ``:name`` parameters into the dialect's (``%(name)s`` for psycopg)."""
    if mark == "?":
        return sql
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", sql)


class Dialect:
    """One database's statements; each is built once, on first use."""

    def __init__(self, name: str, mark: str) -> None:
        self.name = name
        self.mark = mark  # the positional placeholder: "?" or "%s"

    # -- writes of put / put_writes ------------------------------------------------------------

    @cached_property
    def upsert_checkpoint(self) -> str:
        metadata = ":metadata" if self.name == "sqlite" else "CAST(:metadata AS jsonb)"
        return _named(
            f"INSERT INTO langgraph_checkpoints ({_COLUMNS}) VALUES (:thread_id, "
            ":checkpoint_ns, :checkpoint_id, :parent_checkpoint_id, :run_id, :type, :checkpoint, "
            f"{metadata}, :due) ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) "
            "DO UPDATE SET parent_checkpoint_id = excluded.parent_checkpoint_id, "
            "run_id = excluded.run_id, type = excluded.type, checkpoint = excluded.checkpoint, "
            "metadata = excluded.metadata, due = excluded.due",
            self.mark,
        )

    @cached_property
    def insert_blob(self) -> str:
        return _named(
            f"INSERT INTO langgraph_blobs ({_BLOB_COLUMNS}) VALUES (:thread_id, :checkpoint_ns, "
            ":channel, :version, :kind, NULL, :tag, :type, :blob) ON CONFLICT DO NOTHING",
            self.mark,
        )

    @cached_property
    def insert_delta(self) -> str:
        """A delta row, stored only while its base row still has the tag the writer saw."""
        return _named(
            f"INSERT INTO langgraph_blobs ({_BLOB_COLUMNS}) SELECT :thread_id, :checkpoint_ns, "
            ":channel, :version, 1, :base, :tag, :type, :blob WHERE EXISTS (SELECT 1 FROM "
            "langgraph_blobs WHERE thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns "
            "AND channel = :channel AND version = :base AND tag = :base_tag) "
            "ON CONFLICT DO NOTHING",
            self.mark,
        )

    @cached_property
    def upsert_writes(self) -> str:
        """Special writes (errors, interrupts) replace what their task wrote before."""
        return self._insert_writes(
            "DO UPDATE SET channel = excluded.channel, type = excluded.type, "
            "blob = excluded.blob, task_path = excluded.task_path"
        )

    @cached_property
    def insert_writes(self) -> str:
        """Other writes are kept as first written (a task's writes are idempotent)."""
        return self._insert_writes("DO NOTHING")

    def _insert_writes(self, conflict: str) -> str:
        return _named(
            f"INSERT INTO langgraph_writes ({_WRITE_COLUMNS}) VALUES (:thread_id, "
            ":checkpoint_ns, :checkpoint_id, :task_id, :task_path, :idx, :channel, :type, :blob) "
            "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) " + conflict,
            self.mark,
        )

    # -- the thread's run ----------------------------------------------------------------------

    @cached_property
    def root_checkpoint(self) -> str:
        """About root checkpoint ``:checkpoint_id`` of thread ``:run_id``: the channels of its
        special writes, and whether it is stored."""
        special = (
            "group_concat(channel, ',')" if self.name == "sqlite" else "string_agg(channel, ',')"
        )
        return _named(
            f"SELECT (SELECT {special} FROM langgraph_writes WHERE thread_id = :run_id AND "
            "checkpoint_ns = '' AND checkpoint_id = :checkpoint_id AND idx < 0), EXISTS "
            "(SELECT 1 FROM langgraph_checkpoints WHERE thread_id = :run_id AND "
            "checkpoint_ns = '' AND checkpoint_id = :checkpoint_id)",
            self.mark,
        )

    @cached_property
    def thread_tip(self) -> str:
        """The newest root checkpoint id of thread ``:run_id``, and whether special writes wait
        for a root checkpoint not stored yet (what a remembered head must not miss)."""
        return _named(
            "SELECT (SELECT max(checkpoint_id) FROM langgraph_checkpoints WHERE thread_id = "
            ":run_id AND checkpoint_ns = ''), EXISTS (SELECT 1 FROM langgraph_writes w WHERE "
            "w.thread_id = :run_id AND w.checkpoint_ns = '' AND w.idx < 0 AND NOT EXISTS ("
            "SELECT 1 FROM langgraph_checkpoints c WHERE c.thread_id = :run_id AND "
            "c.checkpoint_ns = '' AND c.checkpoint_id = w.checkpoint_id))",
            self.mark,
        )

    # -- reads ---------------------------------------------------------------------------------

    def _metadata(self) -> str:
        return "metadata" if self.name == "sqlite" else "metadata::text"

    @cached_property
    def get_checkpoint(self) -> str:
        return _named(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            f"checkpoint, {self._metadata()} FROM langgraph_checkpoints WHERE thread_id = "
            ":thread_id AND checkpoint_ns = :checkpoint_ns AND checkpoint_id = :checkpoint_id",
            self.mark,
        )

    @cached_property
    def latest_checkpoint(self) -> str:
        return _named(
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            f"checkpoint, {self._metadata()} FROM langgraph_checkpoints WHERE thread_id = "
            ":thread_id AND checkpoint_ns = :checkpoint_ns ORDER BY checkpoint_id DESC LIMIT 1",
            self.mark,
        )

    @cached_property
    def chain(self) -> str:
        """Blob rows of the wanted (channel, version) pairs and of the versions they extend."""
        if self.name == "sqlite":
            wanted = (
                "SELECT json_extract(value, '$[0]') AS channel, json_extract(value, '$[1]') AS "
                "version FROM json_each(:wanted)"
            )
        else:
            wanted = "SELECT * FROM unnest(%(channels)s::text[], %(versions)s::text[])"
        sql = (
            f"WITH RECURSIVE wanted(channel, version) AS ({wanted}), "
            "chain(channel, version, kind, base, depth, type, blob, tag) AS ("
            "SELECT b.channel, b.version, b.kind, b.base, 0, b.type, b.blob, b.tag "
            "FROM wanted w CROSS JOIN langgraph_blobs b WHERE b.thread_id = :thread_id "
            "AND b.checkpoint_ns = :checkpoint_ns AND b.channel = w.channel "
            "AND b.version = w.version "
            "UNION ALL SELECT b.channel, b.version, b.kind, b.base, c.depth + 1, b.type, b.blob, "
            "b.tag FROM chain c CROSS JOIN langgraph_blobs b WHERE c.kind = 1 "
            f"AND c.depth < {CHAIN_LIMIT} AND b.thread_id = :thread_id "
            "AND b.checkpoint_ns = :checkpoint_ns AND b.channel = c.channel "
            "AND b.version = c.base) "
            "SELECT channel, version, kind, depth, type, blob, tag FROM chain"
        )
        return _named(sql, self.mark)

    def chain_params(
        self, thread_id: str, checkpoint_ns: str, wanted: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
        if self.name == "sqlite":
            params["wanted"] = json.dumps(wanted)
        else:
            params["channels"] = [c for c, _ in wanted]
            params["versions"] = [v for _, v in wanted]
        return params

    @cached_property
    def get_writes(self) -> str:
        return _named(
            "SELECT task_id, channel, type, blob, task_path, idx FROM langgraph_writes "
            "WHERE thread_id = :thread_id AND checkpoint_ns = :checkpoint_ns "
            "AND checkpoint_id = :checkpoint_id",
            self.mark,
        )

    def list_checkpoints(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before: str | None,
        filters: Mapping[str, Any],
        limit: int | None,
    ) -> tuple[str, dict[str, Any]]:
        """The listing query (newest first). ``filters`` holds the metadata keys to match
        in SQL (scalars); others are matched by the caller."""
        where: list[str] = []
        params: dict[str, Any] = {}
        for column, value in (
            ("thread_id", thread_id),
            ("checkpoint_ns", checkpoint_ns),
            ("checkpoint_id", checkpoint_id),
        ):
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = value
        if before is not None:
            where.append("checkpoint_id < :before")
            params["before"] = before
        for i, (key, value) in enumerate(filters.items()):
            where.append(self._filter(key, value, f"f{i}", params))
        sql = (
            "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
            f"checkpoint, {self._metadata()} FROM langgraph_checkpoints"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY checkpoint_id DESC"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return _named(sql, self.mark), params

    def filters_in_sql(self, value: Any) -> bool:
        """Whether a metadata filter on ``value`` is matched in SQL (else by the caller):
        PostgreSQL compares any JSON value, SQLite scalars only."""
        return self.name == "postgres" or not isinstance(value, dict | list)

    def _filter(self, key: str, value: Any, name: str, params: dict[str, Any]) -> str:
        check_filter_key(key)
        params[f"{name}k"] = f'$."{key}"' if self.name == "sqlite" else key
        if self.name == "postgres":
            params[name] = json.dumps(value)
            return f"metadata -> CAST(:{name}k AS text) = CAST(:{name} AS jsonb)"
        path = f"metadata, :{name}k"
        if value is None:
            return f"json_type({path}) = 'null'"
        if isinstance(value, bool):
            return f"json_type({path}) = '{'true' if value else 'false'}'"
        params[name] = value
        kinds = "('text')" if isinstance(value, str) else "('integer', 'real')"
        return f"json_type({path}) IN {kinds} AND json_extract({path}) = :{name}"

    def array(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values)) if self.name == "sqlite" else list(values)

    def in_array(self, column: str, name: str) -> str:
        if self.name == "sqlite":
            return f"{column} IN (SELECT value FROM json_each(:{name}))"
        return f"{column} = ANY(%({name})s)"

    # -- maintenance ---------------------------------------------------------------------------

    def delete_thread(self, table: str) -> str:
        return _named(f"DELETE FROM {table} WHERE thread_id = :thread_id", self.mark)

    @cached_property
    def threads_of_runs(self) -> str:
        return _named(
            "SELECT DISTINCT thread_id FROM langgraph_checkpoints WHERE "
            + self.in_array("run_id", "run_ids"),
            self.mark,
        )

    @cached_property
    def checkpoints_of_runs(self) -> str:
        return _named(
            "SELECT checkpoint_ns, checkpoint_id FROM langgraph_checkpoints WHERE thread_id = "
            ":thread_id AND " + self.in_array("run_id", "run_ids"),
            self.mark,
        )

    @cached_property
    def heads(self) -> str:
        return _named(
            "SELECT checkpoint_ns, max(checkpoint_id) FROM langgraph_checkpoints "
            "WHERE thread_id = :thread_id GROUP BY checkpoint_ns",
            self.mark,
        )

    @cached_property
    def older_than(self) -> str:
        return _named(
            "SELECT checkpoint_ns, checkpoint_id FROM langgraph_checkpoints WHERE thread_id = "
            ":thread_id AND checkpoint_ns = :checkpoint_ns AND checkpoint_id < :checkpoint_id",
            self.mark,
        )

    @cached_property
    def special_writes(self) -> str:
        """The channels of a checkpoint's special writes (errors, interrupts, resumes)."""
        return _named(
            "SELECT channel FROM langgraph_writes WHERE thread_id = :thread_id AND "
            "checkpoint_ns = :checkpoint_ns AND checkpoint_id = :checkpoint_id AND idx < 0",
            self.mark,
        )

    @cached_property
    def delete_checkpoint(self) -> str:
        return _named(
            "DELETE FROM langgraph_checkpoints WHERE thread_id = :thread_id AND checkpoint_ns = "
            ":checkpoint_ns AND checkpoint_id = :checkpoint_id",
            self.mark,
        )

    @cached_property
    def delete_writes(self) -> str:
        return _named(
            "DELETE FROM langgraph_writes WHERE thread_id = :thread_id AND checkpoint_ns = "
            ":checkpoint_ns AND checkpoint_id = :checkpoint_id",
            self.mark,
        )

    @cached_property
    def orphan_parent(self) -> str:
        """Forget a parent that is gone (after pruning older checkpoints)."""
        return _named(
            "UPDATE langgraph_checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = "
            ":thread_id AND checkpoint_ns = :checkpoint_ns AND checkpoint_id = :checkpoint_id",
            self.mark,
        )

    @cached_property
    def thread_checkpoints(self) -> str:
        """A thread's checkpoints, oldest first (for collecting blobs and copying)."""
        return _named(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
            f"{self._metadata()}, due FROM langgraph_checkpoints WHERE thread_id = :thread_id "
            "ORDER BY checkpoint_id",
            self.mark,
        )

    @cached_property
    def blob_index(self) -> str:
        return _named(
            "SELECT checkpoint_ns, channel, version, base FROM langgraph_blobs "
            "WHERE thread_id = :thread_id",
            self.mark,
        )

    @cached_property
    def delete_blob(self) -> str:
        return _named(
            "DELETE FROM langgraph_blobs WHERE thread_id = :thread_id AND checkpoint_ns = "
            ":checkpoint_ns AND channel = :channel AND version = :version",
            self.mark,
        )

    def copy_rows(self, table: str, columns: str) -> str:
        rest = columns.split(", ", 1)[1]
        return _named(
            f"INSERT INTO {table} ({columns}) SELECT :target, {rest} FROM {table} "
            "WHERE thread_id = :source",
            self.mark,
        )

    @cached_property
    def copies(self) -> tuple[str, str, str]:
        return (
            self.copy_rows("langgraph_checkpoints", _COLUMNS),
            self.copy_rows("langgraph_blobs", _BLOB_COLUMNS),
            self.copy_rows("langgraph_writes", _WRITE_COLUMNS),
        )


SQLITE = Dialect("sqlite", "?")
POSTGRES = Dialect("postgres", "%s")

TABLES = ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes")
