"""KQL queries against a real store: each query must select exactly the expected events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from logstore_samples import JOB_A, NOW_NS, sample_documents

from flowscope.logstore import KQLError, LogStore
from flowscope.logstore.dates import parse_timestamp


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogStore]:
    """One filled store for the whole module: these tests only read."""
    with LogStore(tmp_path_factory.mktemp("search") / "logstore.db") as store:
        store.insert(sample_documents())
        yield store


def ids(store: LogStore, query: str) -> set[str]:
    found = store.search(query, limit=1000, now=NOW_NS)
    assert store.count(query, now=NOW_NS) == len(found)
    return {document["event.id"] for document in found}


ALL = {"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "b1", "b2", "b3", "b4", "b5", "w1"}

CASES = [
    # The seed's example, as typed: alias field names, upper-case keyword and level.
    ("workflow_id:wf-8a2f1e9b AND level:ERROR", {"a7", "a8"}),
    ("workflow.id:wf-8a2f1e9b and log.level:error", {"a7", "a8"}),
    ("level:Error", {"a7", "a8"}),
    ("", ALL),
    ("*", ALL),
    # Keywords are exact and case-sensitive; wildcards anywhere; several words match any.
    ("node:KSampler", {"a4", "a5", "b3", "b4"}),
    ("node:ksampler", set()),
    ("node:KSamp*", {"a4", "a5", "b3", "b4"}),
    ("node:*Decode", {"a6", "a7", "a8"}),
    ("node:K*er", {"a4", "a5", "b3", "b4"}),
    ("node:VAEDecode KSampler", {"a4", "a5", "a6", "a7", "a8", "b3", "b4"}),
    ("node:(VAEDecode or KSampler) and not event.action:node.started", {"a5", "a7", "a8", "b4"}),
    ("node.type:(KSampler and not VAEDecode)", {"a4", "a5", "b3", "b4"}),
    ("event.action:NODE.FAILED", {"a7"}),
    ("event.outcome:failure", {"a7", "a8"}),
    ("user_id:alice and event.action:job.*", {"a1", "a8"}),
    (f"job.id:{JOB_A} and node.id:3", {"a4", "a5"}),
    ("trace.id:" + "b" * 32, {"b1", "b2", "b3", "b4", "b5"}),
    # and binds tighter than or; parentheses change it; not of a missing field is true.
    ("user_id:bob or user_id:alice and level:error", {"b1", "b2", "b3", "b4", "b5", "a7", "a8"}),
    ("(user_id:bob or user_id:alice) and level:error", {"a7", "a8"}),
    ("not job.id:*", {"w1"}),
    ("not not job.id:*", ALL - {"w1"}),
    ("NOT error.type:* AND node.id:8", {"a6"}),
    ("error.type:*", {"a7", "a8"}),
    # Numbers, booleans, ranges.
    ("duration_ms > 1000", {"a5", "b4"}),
    ("duration_ms >= 1000", {"a3", "a5", "b4"}),
    ("duration_ms < 1000", {"a7"}),
    ("duration_ms <= 1000 and duration_ms>=500", {"a3", "a7"}),
    ("event.duration >= 1800000000", {"a5", "a8", "b5"}),
    ("node.duration_ms:1500", {"b4"}),
    ("event.sequence:1", {"a1", "b1"}),
    ("node.cached:true", {"b2"}),
    ("node.cached:FALSE", {"a3", "a5", "a7", "b4"}),
    ("job.nodes_total:3", {"a1"}),
    ("job.nodes_total > 2", {"a1"}),
    # Dates: a date is an interval at its precision; > and <= round up over it.
    ("@timestamp:2026-11-23", ALL),
    ("@timestamp:2026-11-24", set()),
    ('@timestamp >= "2026-11-23T09:30:11"', {"b4", "b5", "w1"}),
    ('@timestamp > "2026-11-23T09:30:11"', {"w1"}),
    ('@timestamp <= "2026-11-23T09:30:00"', {"a1", "a2"}),
    ('@timestamp < "2026-11-23T09:30:00"', set()),
    ('@timestamp:"2026-11-23T09:30:03"', {"a5", "a6", "a7", "a8"}),
    ("@timestamp > 2026-11-23", set()),
    ("@timestamp < now-1d", ALL),
    ("@timestamp >= now-1d", set()),
    ("@timestamp >= now-2d/d", ALL),
    (
        '@timestamp >= "2026-11-23T11:30:00+02:00" and @timestamp < "2026-11-23T09:30:01Z"',
        {"a1", "a2"},
    ),
    # Full text over message and error.message: words, phrases, prefixes, case-insensitive.
    ('"out of memory"', {"a7", "a8"}),
    ('"memory out of"', set()),
    ("MEMORY", {"a7", "a8"}),
    ("mem*", {"a7", "a8"}),
    ("allocate succeeded", {"a3", "a5", "a7", "a8", "b4", "b5"}),
    ("*emor*", {"a7", "a8"}),
    ("message:cached", {"b2"}),
    ("message:memory", set()),
    ('error.message:"2.00 GiB"', {"a7", "a8"}),
    ("error.message:*", {"a7", "a8"}),
    ("worker", {"w1"}),
    # Fields kept in JSON: keywords, text (substring), object keys by JSON type.
    ('node.title:"Sampler (hi-res pass)"', {"a4", "a5"}),
    ("node.title:Sampler*", {"a4", "a5"}),
    ("error.code:out_of_memory", {"a7"}),
    ("error.stack_trace:VAEDecode.decode", {"a7"}),
    ("node.inputs.seed:42", {"a5", "b4"}),
    ('node.inputs.seed:"42"', {"b4"}),
    ("node.inputs.seed > 10", {"a5"}),
    ("node.inputs.steps >= 20 and node.inputs.steps < 30", {"a5"}),
    ("node.inputs.sampler_name:euler", {"a5"}),
    ("node.inputs.sampler_name:dpm*", {"b4"}),
    ("node.inputs.add_noise:true", {"a5"}),
    ("node.inputs.add_noise:false", {"b4"}),
    ("node.inputs.denoise:1", {"a5"}),
    ("node.inputs.ckpt_name:*", {"a3"}),
    ("node.inputs:*", {"a3", "a5", "b4"}),
    ("node.inputs.note:*100%*", {"b4"}),
    ("node.inputs.note:*cotton_candy", {"b4"}),
    ("node.inputs.note:*cotton?candy", set()),
    ("node.inputs.missing:*", set()),
    # The service/host context, stored once per process.
    ("service.name:flowscope and node:KSampler", {"a4", "a5"}),
    ("host.name:gpu-*", ALL - {"w1"} | {"w1"}),
    ("not service.name:worker", ALL - {"b1", "b2", "b3", "b4", "b5"}),
    ("host.name > gpu-1", {"b1", "b2", "b3", "b4", "b5"}),
    # Escapes: a literal colon, star and keyword.
    (r"error.type:torch.OutOfMemoryError\*", set()),
    (r"message:worker\ started", {"w1"}),
    (r"\not", set()),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_query_selects_exactly(searched: LogStore, query: str, expected: set[str]) -> None:
    assert ids(searched, query) == expected


def test_newest_first_limit_and_window(sample_store: LogStore) -> None:
    newest = sample_store.search("node:KSampler", limit=2)
    assert [d["event.id"] for d in newest] == ["b4", "b3"]
    oldest = sample_store.search("node:KSampler", limit=2, oldest_first=True)
    assert [d["event.id"] for d in oldest] == ["a4", "a5"]
    assert sample_store.search("", since=parse_timestamp("2026-11-23T09:30:20.000001Z")) == []
    window = sample_store.search(
        "node:KSampler",
        since=parse_timestamp("2026-11-23T09:30:02Z"),
        until=parse_timestamp("2026-11-23T09:30:11Z"),
    )
    assert {d["event.id"] for d in window} == {"a5", "b3"}
    assert sample_store.search("", limit=0) == []


def test_bad_query_is_a_kql_error_not_sql(sample_store: LogStore) -> None:
    with pytest.raises(KQLError) as caught:
        sample_store.search("level:error and (node:KSampler or")
    assert caught.value.position == len("level:error and (node:KSampler or")
