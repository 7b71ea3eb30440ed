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
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from flowscope.logstore.compiler import compile_kql
from flowscope.logstore.dates import NS_PER_S, to_ns
from flowscope.logstore.row_plans import Record, RowBuilder
from flowscope.logstore.rows import (
    CONTEXT_JOIN,
    EXTRA,
    INSERT_SQL,
    SELECT_COLUMNS,
    document_row,
    dumps,
    to_document,
    wide_integers,
)
from flowscope.logstore.schema import (
    FTS_DELETE_IDS,
    FTS_INSERT_AFTER,
    SchemaError,
    ensure_schema,
)
from flowscope.telemetry.events import Event

STORE_FILENAME = "logstore.db"
PRUNE_CHUNK = 5_000  # rows per delete transaction: a prune never blocks writers for long
CACHE_KIB = 32 * 1024
MAX_ROW_BUILDERS = 16

TimeBound = datetime | int  # a datetime, or nanoseconds since the epoch


class StoreMissingError(FileNotFoundError):
    """There is no log store at the path (and the caller did not ask to create one)."""


def bind_none_and_bool_directly() -> None:
    """Make binding `None` and booleans cheap, for this whole process.

    Python 3.11's sqlite3 looks for an adapter for every parameter that is not exactly an int,
    float, str or bytes; for None and bool the lookup fails by raising (and discarding) an
    AttributeError, which costs a tenth of an insert with our rows' many NULLs. Registered
    adapters are found at once: None stays None (`{}.get` returns it, in C) and a bool becomes
    the int SQLite stores anyway. Process-wide, so the writer process calls it: it talks to
    nothing but its store.
    """
    sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))
    sqlite3.register_adapter(bool, int)


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
        self._builders: dict[str, RowBuilder] = {}  # per set of static fields

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
        return self.insert_records(
            [
                (event.time_ns, event.level.value, event.action.value, event.message, event.fields)
                for event in events
            ],
            static_fields,
        )

    def insert_records(
        self, records: Sequence[Record], static_fields: Mapping[str, Any] | None = None
    ) -> int:
        """`insert_events` for events taken apart: (time_ns, level, action, message, fields),
        the form the writer process receives them in. Returns how many were new."""
        with self._lock:
            return self.insert_rows(self._row_builder(static_fields or {}).rows(records))

    def _row_builder(self, static_fields: Mapping[str, Any]) -> RowBuilder:
        key = dumps(dict(sorted(static_fields.items())))
        builder = self._builders.get(key)
        if builder is None:
            if len(self._builders) >= MAX_ROW_BUILDERS:
                self._builders.clear()
            builder = self._builders[key] = RowBuilder(self.context_id, static_fields)
        return builder

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
                except (UnicodeEncodeError, OverflowError):
                    # Text SQLite cannot store (lone surrogates from a JSON \\ud800 escape), or
                    # an integer beyond 64 bits in a typed column (rows from row_plans do not
                    # check the range): fixed, row by row, rather than losing the batch.
                    inserted = sum(
                        connection.execute(INSERT_SQL, _storable(row)).rowcount for row in rows
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


def _storable(row: Sequence[Any]) -> list[Any]:
    """The row with text SQLite can store, and integers beyond 64 bits moved to `extra` (as
    rows.build_row places them)."""
    values = [
        value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value
        for value in row
    ]
    moved = wide_integers(values)
    if moved:
        extra = json.loads(values[EXTRA]) if values[EXTRA] else {}
        values[EXTRA] = dumps({**extra, **moved})
    return values
