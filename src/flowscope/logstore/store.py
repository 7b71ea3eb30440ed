"""`LogStore`: one SQLite file of events (schema.py) with inserts, retention and KQL search.

Writes are batched into one transaction each; duplicates (same `event.id`) are ignored, so a
file imported twice or a batch retried is absorbed. One connection, guarded by a lock, so a store
can be shared by threads (the sink's writer, a server's request handlers).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowscope.logstore.compiler import compile_kql
from flowscope.logstore.dates import NS_PER_S, to_ns
from flowscope.logstore.rows import (
    CONTEXT_JOIN,
    INSERT_SQL,
    SELECT_COLUMNS,
    build_row,
    document_row,
    dumps,
    to_document,
)
from flowscope.logstore.schema import (
    FTS_DELETE_IDS,
    FTS_INSERT_AFTER,
    SchemaError,
    ensure_schema,
)
from flowscope.telemetry.events import Event

STORE_FILENAME = "logstore.db"
PRUNE_CHUNK = 5_000
CACHE_KIB = 32 * 1024  # rows per delete transaction: a prune never blocks writers for long

TimeBound = datetime | int  # a datetime, or nanoseconds since the epoch


class StoreMissingError(FileNotFoundError):
    """There is no log store at the path (and the caller did not ask to create one)."""


def store_path(base_directory: str | os.PathLike[str]) -> Path:
    """Where the log store of a data directory lives: `<base>/logstore.db`."""
    return Path(base_directory) / STORE_FILENAME


def bound_ns(bound: TimeBound | None) -> int | None:
    if bound is None or isinstance(bound, int):
        return bound
    return to_ns(bound)


class LogStore:
    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreMissingError(
                f"no log store at {self.path}: it is written by the log store sink, or import "
                "JSON-lines logs with `flowscope logs import FILE...`"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._connection.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a crash of the process loses nothing committed; power loss may
            # lose the last transactions, acceptable for logs that also live in JSON lines.
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._connection.execute("PRAGMA temp_store = MEMORY")
            # 32 MiB of page cache (the default is 2): index pages of recent events stay in
            # memory, which halves full-text and range lookups over a million events.
            self._connection.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
            ensure_schema(self._connection, str(self.path))
        except sqlite3.DatabaseError as exc:
            self._connection.close()
            raise SchemaError(f"{self.path} is not a log store ({exc})") from None
        except BaseException:
            self._connection.close()
            raise
        self._contexts: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def insert(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Store ECS documents (JSON-lines records); returns how many were new. Every document
        is checked first: a bad one raises DocumentError and nothing is written."""
        with self._lock:
            rows = [document_row(document, self.context_id) for document in documents]
            return self.insert_rows(rows)

    def insert_events(
        self, events: Sequence[Event], static_fields: Mapping[str, Any] | None = None
    ) -> int:
        """Store events straight from the bus; `static_fields` (service.*, host.name) are the
        same for all of them. Returns how many were new."""
        static = dict(static_fields or {})
        with self._lock:
            static_id = self.context_id(static)

            def context_id(found: dict[str, Any]) -> int | None:
                return self.context_id({**static, **found}) if found else static_id

            rows = [
                build_row(
                    event.time_ns,
                    event.level.value,
                    event.action.value,
                    event.message,
                    event.fields or {},
                    context_id,
                )
                for event in events
            ]
            return self.insert_rows(rows)

    def insert_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """Insert prepared rows (rows.py) in one transaction; returns how many were new."""
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                (last_id,) = connection.execute(
                    "SELECT coalesce(max(id), 0) FROM events"
                ).fetchone()
                try:
                    inserted = connection.executemany(INSERT_SQL, rows).rowcount
                except UnicodeEncodeError:
                    # Text SQLite cannot store (lone surrogates from a JSON \\ud800 escape):
                    # replaced, row by row, rather than losing the batch.
                    inserted = sum(
                        connection.execute(INSERT_SQL, _encodable(row)).rowcount for row in rows
                    )
                connection.execute(FTS_INSERT_AFTER, (last_id,))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return max(inserted, 0)

    def context_id(self, context: dict[str, Any]) -> int | None:
        """The `contexts` id of a set of service/host fields (stored on first use)."""
        if not context:
            return None
        text = dumps(dict(sorted(context.items())))
        found = self._contexts.get(text)
        if found is not None:
            return found
        with self._lock:
            self._connection.execute("INSERT OR IGNORE INTO contexts (doc) VALUES (?)", (text,))
            (found,) = self._connection.execute(
                "SELECT id FROM contexts WHERE doc = ?", (text,)
            ).fetchone()
            self._contexts[text] = int(found)
            return int(found)

    # -- retention -----------------------------------------------------------------------
    def prune(self, older_than: timedelta | float, *, now: TimeBound | None = None) -> int:
        """Delete events older than `older_than` (a timedelta, or seconds); returns how many."""
        age_s = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        now_ns = bound_ns(now) if now is not None else time.time_ns()
        assert now_ns is not None
        return self.prune_before(now_ns - int(age_s * NS_PER_S))

    def prune_before(self, cutoff_ns: int) -> int:
        """Delete events with a timestamp before `cutoff_ns`, a chunk per transaction."""
        deleted = 0
        while True:
            with self._lock:
                ids = [
                    row[0]
                    for row in self._connection.execute(
                        "SELECT id FROM events WHERE time_ns < ? ORDER BY time_ns LIMIT ?",
                        (cutoff_ns, PRUNE_CHUNK),
                    )
                ]
                if ids:
                    self._delete(json.dumps(ids))
                deleted += len(ids)
            if len(ids) < PRUNE_CHUNK:
                return deleted

    def _delete(self, ids_json: str) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(FTS_DELETE_IDS, (ids_json,))
            connection.execute(
                "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))", (ids_json,)
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    # -- reading -------------------------------------------------------------------------
    def search(
        self,
        query: str = "",
        *,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        limit: int = 100,
        oldest_first: bool = False,
        now: TimeBound | None = None,
    ) -> list[dict[str, Any]]:
        """The documents matching a KQL query, newest first (or oldest first), at most `limit`.
        Raises KQLError for a bad query."""
        where, params = self._where(query, since, until, now)
        order = "ASC" if oldest_first else "DESC"
        # Two steps: pick the ids in order first, then read the full rows of those only (a
        # word matching thousands of events sorts thousands of ids, not thousands of rows).
        rows = self.fetch(
            f"SELECT {SELECT_COLUMNS} FROM "
            f"(SELECT e.id, e.time_ns FROM events AS e WHERE {where} "
            f"ORDER BY e.time_ns {order}, e.id {order} LIMIT ?) AS picked "
            f"JOIN events AS e ON e.id = picked.id {CONTEXT_JOIN} "
            f"ORDER BY picked.time_ns {order}, picked.id {order}",
            (*params, max(0, limit)),
        )
        return [to_document(row) for row in rows]

    def count(
        self,
        query: str = "",
        *,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        now: TimeBound | None = None,
    ) -> int:
        where, params = self._where(query, since, until, now)
        return int(self.fetch(f"SELECT count(*) FROM events AS e WHERE {where}", params)[0][0])

    def _where(
        self, query: str, since: TimeBound | None, until: TimeBound | None, now: TimeBound | None
    ) -> tuple[str, tuple[Any, ...]]:
        compiled = compile_kql(query, now_ns=bound_ns(now))
        clauses, params = [compiled.where], list(compiled.params)
        since_ns, until_ns = bound_ns(since), bound_ns(until)
        if since_ns is not None:
            clauses.append("e.time_ns >= ?")
            params.append(since_ns)
        if until_ns is not None:
            clauses.append("e.time_ns < ?")
            params.append(until_ns)
        return " AND ".join(clauses), tuple(params)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only statement (the canned views use this)."""
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (benchmarks, backups)."""
        with self._lock:
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def stats(self) -> dict[str, Any]:
        """Size facts: events, first/last time, file bytes (database + WAL)."""
        count, first, last = self.fetch("SELECT count(*), min(time_ns), max(time_ns) FROM events")[
            0
        ]
        wal = Path(f"{self.path}-wal")
        size = self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        return {"events": count, "first_ns": first, "last_ns": last, "bytes": size}


def _encodable(row: Sequence[Any]) -> list[Any]:
    return [
        value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value
        for value in row
    ]
