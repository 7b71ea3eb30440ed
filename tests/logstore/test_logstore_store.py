"""The store itself: documents round-trip, duplicates are absorbed, bad input is refused or
repaired, retention deletes (index included), and the file is checked on open."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from logstore_samples import sample_documents

from flowscope.logstore import (
    DocumentError,
    LogStore,
    SchemaError,
    StoreMissingError,
    node_stats,
    schema,
    store_path,
)
from flowscope.logstore import store as store_module
from flowscope.logstore.dates import parse_timestamp
from flowscope.telemetry.events import Action, Event, Level


def test_documents_round_trip(store: LogStore) -> None:
    documents = sample_documents()
    assert store.insert(documents) == len(documents)
    stored = {d["event.id"]: d for d in store.search(limit=100)}
    for original in documents:
        assert stored[original["event.id"]] == original
    store.fetch("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")


def test_duplicates_by_event_id_are_absorbed(store: LogStore) -> None:
    documents = sample_documents()
    store.insert(documents)
    assert store.insert(documents) == 0
    assert store.insert([*documents[:3], {**documents[0], "event.id": "new"}]) == 1
    assert store.count() == len(documents) + 1


def test_documents_without_event_id_are_deduplicated_by_content(store: LogStore) -> None:
    plain = [{"@timestamp": "2026-11-23T09:30:00Z", "message": f"line {i}"} for i in range(3)]
    assert store.insert(plain) == 3
    assert store.insert(plain) == 0
    ids = {d["event.id"] for d in store.search()}
    assert len(ids) == 3
    assert all(i.startswith("sha256-") for i in ids)


def test_nested_objects_are_flattened_and_levels_lowered(store: LogStore) -> None:
    store.insert(
        [
            {
                "@timestamp": "2026-11-23T09:30:00.5+01:00",
                "log": {"level": "ERROR"},
                "event": {"action": "node.failed", "id": "n1"},
                "node": {"type": "KSampler", "inputs": {"seed": 7, "nested": {"k": 1}}},
                "message": "boom",
            }
        ]
    )
    (document,) = store.search("level:error and node:KSampler and node.inputs.nested.k:1")
    assert document["@timestamp"] == "2026-11-23T08:30:00.500000Z"
    assert document["log.level"] == "error"
    assert document["node.inputs"] == {"seed": 7, "nested": {"k": 1}}


def test_hot_fields_of_an_unexpected_type_are_kept(store: LogStore) -> None:
    odd: dict[str, Any] = {
        "@timestamp": "2026-11-23T09:30:00Z",
        "event.id": "odd",
        "job.id": 123,
        "event.sequence": "7",
        "node.cached": "yes",
        "node.duration_ms": float("nan"),
        "node.inputs": {"cfg": float("inf"), "x": [1, 2]},
        "message": 5,
    }
    store.insert([odd])
    (document,) = store.search()
    assert document["job.id"] == 123
    assert document["event.sequence"] == "7"
    assert document["node.cached"] == "yes"
    assert document["message"] == 5
    # JSON cannot hold non-finite floats: they are kept as text, and the JSON stays queryable.
    assert document["node.duration_ms"] == "nan"
    assert document["node.inputs"] == {"cfg": "inf", "x": [1, 2]}
    assert store.count("node.inputs.cfg:inf") == 1


def test_text_sqlite_cannot_store_is_replaced_not_lost(store: LogStore) -> None:
    documents = [
        {"@timestamp": "2026-11-23T09:30:00Z", "event.id": "s1", "message": "bad \ud800 text"},
        {"@timestamp": "2026-11-23T09:30:01Z", "event.id": "s2", "message": "fine"},
    ]
    assert store.insert(documents) == 2
    assert {d["message"] for d in store.search()} == {"bad ? text", "fine"}


def test_a_bad_document_writes_nothing(store: LogStore) -> None:
    with pytest.raises(DocumentError, match="missing @timestamp"):
        store.insert([*sample_documents(), {"message": "no time"}])
    with pytest.raises(DocumentError, match="not an ISO 8601 time"):
        store.insert([{"@timestamp": "yesterday"}])
    with pytest.raises(DocumentError, match="expected a JSON object"):
        store.insert([["not", "an", "object"]])  # type: ignore[list-item]
    assert store.count() == 0


def test_events_keep_their_nanoseconds_and_service_fields(store: LogStore) -> None:
    time_ns = parse_timestamp("2026-11-23T09:30:00Z") + 123_456_789
    event = Event(
        Action.NODE_FAILED,
        "node failed",
        time_ns,
        Level.ERROR,
        {"event.id": "e1", "node.type": "KSampler", "error.message": "CUDA out of memory"},
    )
    assert store.insert_events([event], {"service.name": "flowscope", "host.name": "h1"}) == 1
    assert store.fetch("SELECT time_ns FROM events") == [(time_ns,)]
    (document,) = store.search('"out of memory" and service.name:flowscope and host.name:h1')
    assert document["@timestamp"] == "2026-11-23T09:30:00.123456Z"
    assert document["event.action"] == "node.failed"


def test_prune_deletes_old_events_and_their_full_text(store: LogStore) -> None:
    store.insert(sample_documents())
    now = parse_timestamp("2026-11-23T09:30:10Z")
    assert store.prune(5.0, now=now) == 8  # job A, from 09:30:00 to 09:30:03.9
    assert store.count() == 6
    assert store.count('"out of memory"') == 0
    assert store.count("node:KSampler") == 2
    # The external-content FTS index still agrees with the table.
    store.fetch("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")
    assert store.prune(timedelta(days=1), now=now) == 0


def test_prune_works_in_chunks(store: LogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PRUNE_CHUNK", 3)
    store.insert(sample_documents())
    assert store.prune_before(parse_timestamp("2026-11-24")) == len(sample_documents())
    assert store.count() == 0


def test_opening_checks_the_file(tmp_path: Path) -> None:
    with pytest.raises(StoreMissingError, match="flowscope logs import"):
        LogStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()

    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(SchemaError, match="not a flowscope log store"):
        LogStore(foreign)

    text = tmp_path / "notes.txt"
    text.write_text("not a database, just text that is long enough to have a header" * 20)
    with pytest.raises(SchemaError, match="is not a log store"):
        LogStore(text, create=False)

    newer = store_path(tmp_path)
    LogStore(newer).close()
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaError, match="schema version 99"):
        LogStore(newer, create=False)


def test_wal_mode_and_a_second_connection(tmp_path: Path) -> None:
    path = store_path(tmp_path / "nested" / "dir")
    with LogStore(path) as writer, LogStore(path, create=False) as reader:
        assert writer.fetch("PRAGMA journal_mode") == [("wal",)]
        writer.insert(sample_documents())
        assert reader.count("level:error") == 2
        assert reader.stats()["events"] == len(sample_documents())


def test_a_version_1_store_is_brought_up_to_date_on_open(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    with LogStore(path) as store:
        store.insert(sample_documents())
    # Version 1 spelled the node-results index's condition as an IN list.
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "DROP INDEX events_node_results; "
            "CREATE INDEX events_node_results ON events (node_type, duration_ns, time_ns, action) "
            "WHERE action IN ('node.succeeded', 'node.failed', 'node.cached'); "
            "PRAGMA user_version = 1;"
        )
    with LogStore(path, create=False) as store:
        assert store.fetch("PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
        assert store.count() == len(sample_documents())  # the events are untouched
        plan = store.fetch(
            "EXPLAIN QUERY PLAN SELECT node_type, count(*) FROM events "
            f"WHERE {schema.NODE_RESULTS} AND node_type IS NOT NULL GROUP BY node_type"
        )
        assert "COVERING INDEX events_node_results" in plan[0][-1]
        assert {s.node_type for s in node_stats(store)} == {
            d["node.type"]
            for d in sample_documents()
            if d.get("event.action") in ("node.succeeded", "node.failed", "node.cached")
        }
