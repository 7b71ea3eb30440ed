"""The log store's tables and indexes (SQLite, WAL).

`events` has a typed column per hot field (fields.py), the rest of the document as JSON in
`extra`, and a reference to `contexts`: the service/host fields, identical for every event of a
process, stored once. `events_fts` is an FTS5 index over message + error.message that reads its
text from `events` (external content). The store keeps it in step itself, a batch at a time
(store.py): per-row triggers made inserts three times slower. Times are integer nanoseconds
since the epoch (UTC).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

# Terminal node events: what per-node-type statistics count (views.py). The partial index below
# only serves queries whose WHERE repeats this exact text. Spelled as ORs: SQLite evaluates a
# partial index's condition for every inserted row, and an IN list of three or more constants
# builds a lookup table each time it runs; with executemany that is once per row, a quarter
# of an insert's cost (version 1 of the schema).
NODE_RESULTS = "(action = 'node.succeeded' OR action = 'node.failed' OR action = 'node.cached')"
NODE_RESULTS_INDEX = f"""
CREATE INDEX IF NOT EXISTS events_node_results
    ON events (node_type, duration_ns, time_ns, action) WHERE {NODE_RESULTS};
"""
# From an older version of the schema to this one (the tables are the same): its statements.
MIGRATIONS = {
    1: ("DROP INDEX IF EXISTS events_node_results", NODE_RESULTS_INDEX),
}

# Index the full text of the rows added after row id `?` (ids only grow: INTEGER PRIMARY KEY).
FTS_INSERT_AFTER = (
    "INSERT INTO events_fts (rowid, message, error_message) "
    "SELECT id, message, error_message FROM events WHERE id > ?"
)
# Un-index rows about to be deleted (external content: FTS5 needs the indexed values).
FTS_DELETE_IDS = (
    "INSERT INTO events_fts (events_fts, rowid, message, error_message) "
    "SELECT 'delete', id, message, error_message FROM events "
    "WHERE id IN (SELECT value FROM json_each(?))"
)

DDL = f"""
CREATE TABLE IF NOT EXISTS contexts (
    id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    level TEXT,
    action TEXT,
    outcome TEXT,
    event_id TEXT NOT NULL UNIQUE,
    sequence INTEGER,
    duration_ns INTEGER,
    job_id TEXT,
    workflow_id TEXT,
    user_id TEXT,
    trace_id TEXT,
    node_id TEXT,
    node_type TEXT,
    duration_ms REAL,
    cached INTEGER,
    message TEXT,
    error_type TEXT,
    error_message TEXT,
    context_id INTEGER REFERENCES contexts (id),
    extra TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_level ON events (level, time_ns);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, time_ns);
CREATE INDEX IF NOT EXISTS events_workflow ON events (workflow_id, time_ns);
CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id);
-- Covers the per-node-type statistics: grouped by type, durations in order for percentiles.
{NODE_RESULTS_INDEX}
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5 (
    message, error_message,
    content = 'events', content_rowid = 'id',
    columnsize = 0,  -- no per-row token counts: results are ordered by time, never by rank
    tokenize = 'unicode61 remove_diacritics 2'
);
"""


class SchemaError(RuntimeError):
    """The file is not a log store this version can use."""


def ensure_schema(connection: sqlite3.Connection, path: str) -> None:
    """Create the tables in a new store, bring an older store up to date; refuse a store
    written by another schema version."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version in MIGRATIONS:
        connection.execute("BEGIN IMMEDIATE")  # one process migrates; others wait, then see it
        try:
            if connection.execute("PRAGMA user_version").fetchone()[0] == version:
                for statement in MIGRATIONS[version]:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return
    if version != 0:
        raise SchemaError(
            f"log store {path} has schema version {version}, this flowscope uses "
            f"{SCHEMA_VERSION}: move the file aside and import the JSON-lines logs again "
            "(flowscope logs import)"
        )
    tables = connection.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()[0]
    if tables:
        raise SchemaError(f"{path} is an SQLite database but not a flowscope log store")
    connection.executescript(f"BEGIN; {DDL} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
