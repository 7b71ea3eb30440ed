"""The canned views: a job's timeline (the waterfall's spans) and per-node-type statistics."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest
from logstore_samples import JOB_A, JOB_B, WORKFLOW

from flowscope.logstore import (
    AmbiguousJobError,
    LogStore,
    job_timeline,
    node_stats,
    resolve_job_id,
)
from flowscope.logstore.dates import parse_timestamp
from flowscope.telemetry.events import format_timestamp

MS = 1_000_000


def test_failed_job_timeline(sample_store: LogStore) -> None:
    timeline = job_timeline(sample_store, JOB_A)
    assert timeline is not None
    assert timeline.status == "failed"
    assert timeline.duration_ns == 3_900 * MS  # the job.failed event's own duration
    assert (timeline.workflow_id, timeline.user_id, timeline.trace_id) == (
        WORKFLOW,
        "alice",
        "a" * 32,
    )
    assert [event.document["event.sequence"] for event in timeline.events] == list(range(1, 9))
    assert [event.offset_ns for event in timeline.events][:3] == [0, 100 * MS, 1_100 * MS]
    spans = [
        (s.node_id, s.node_type, s.status, s.offset_ns // MS, s.duration_ns // MS)
        for s in timeline.spans
    ]
    assert spans == [
        ("1", "CheckpointLoaderSimple", "succeeded", 100, 1000),
        ("3", "KSampler", "succeeded", 1200, 2000),
        ("8", "VAEDecode", "failed", 3300, 500),
    ]
    assert timeline.spans[1].title == "Sampler (hi-res pass)"
    assert timeline.spans[2].error_type == "torch.OutOfMemoryError"
    assert timeline.to_dict()["events"][0]["offset_ns"] == 0


def test_cached_nodes_are_zero_length_spans(sample_store: LogStore) -> None:
    timeline = job_timeline(sample_store, JOB_B)
    assert timeline is not None
    assert timeline.status == "succeeded"
    cached, sampler = timeline.spans
    assert (cached.status, cached.offset_ns, cached.duration_ns) == ("cached", 100 * MS, 0)
    assert (sampler.status, sampler.offset_ns, sampler.duration_ns) == (
        "succeeded",
        200 * MS,
        1_500 * MS,
    )


def test_running_job_has_unfinished_spans(store: LogStore) -> None:
    base = parse_timestamp("2026-11-23T09:30:00Z")

    def event(seq: int, offset_ms: int, action: str, **fields: Any) -> dict[str, Any]:
        return {
            "@timestamp": format_timestamp(base + offset_ms * MS),
            "event.action": action,
            "event.id": f"r{seq}",
            "event.sequence": seq,
            "job.id": "running-job",
            **fields,
        }

    store.insert(
        [
            event(1, 0, "job.started"),
            event(2, 10, "node.started", **{"node.id": "1", "node.type": "KSampler"}),
            event(3, 250, "node.progress", **{"node.id": "1", "node.type": "KSampler"}),
        ]
    )
    timeline = job_timeline(store, "running-job")
    assert timeline is not None
    assert timeline.status == "running"
    assert timeline.duration_ns == 250 * MS
    (span,) = timeline.spans
    assert (span.status, span.offset_ns, span.duration_ns) == ("unfinished", 10 * MS, 240 * MS)


def test_unknown_and_prefixed_job_ids(sample_store: LogStore) -> None:
    assert job_timeline(sample_store, "no-such-job") is None
    assert resolve_job_id(sample_store, JOB_A) == JOB_A
    assert resolve_job_id(sample_store, JOB_B[:-1] + "b") == JOB_B
    assert resolve_job_id(sample_store, "nope") is None
    with pytest.raises(AmbiguousJobError, match="starts several job ids"):
        resolve_job_id(sample_store, "5b3f0c1e")


def test_node_stats_over_the_samples(sample_store: LogStore) -> None:
    stats = {entry.node_type: entry for entry in node_stats(sample_store)}
    assert list(stats) == ["KSampler", "CheckpointLoaderSimple", "VAEDecode"]  # by total time
    sampler = stats["KSampler"]
    assert (sampler.count, sampler.runs, sampler.failed, sampler.cached) == (2, 2, 0, 0)
    assert (sampler.mean_ms, sampler.p50_ms, sampler.max_ms) == (1750.0, 1750.0, 2000.0)
    assert sampler.p95_ms == pytest.approx(1975.0)
    loader = stats["CheckpointLoaderSimple"]
    assert (loader.count, loader.runs, loader.cached, loader.cache_hit_rate) == (2, 1, 1, 0.5)
    decode = stats["VAEDecode"]
    assert (decode.count, decode.failed, decode.error_rate, decode.mean_ms) == (1, 1, 1.0, 500.0)


def test_node_stats_percentiles_match_statistics(store: LogStore) -> None:
    rng = random.Random(7)
    base = parse_timestamp("2026-11-23T00:00:00Z")
    documents = []
    durations: dict[str, list[int]] = {"KSampler": [], "VAEDecode": [], "SaveImage": []}
    for i in range(3000):
        node_type = rng.choice(list(durations))
        roll = rng.random()
        action = "node.cached" if roll < 0.2 else "node.failed" if roll < 0.25 else "node.succeeded"
        document: dict[str, Any] = {
            "@timestamp": format_timestamp(base + i * 1_000 * MS),
            "event.action": action,
            "event.id": f"n{i}",
            "node.type": node_type,
        }
        if action != "node.cached":
            duration = int(rng.lognormvariate(18, 1.2))
            document["event.duration"] = duration
            durations[node_type].append(duration)
        documents.append(document)
    # Events that are not node results never count.
    documents.append({**documents[0], "event.id": "start", "event.action": "node.started"})
    documents.append({**documents[1], "event.id": "jobfail", "event.action": "job.failed"})
    store.insert(documents)

    stats = {entry.node_type: entry for entry in node_stats(store)}
    for node_type, values in durations.items():
        entry = stats[node_type]
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        assert entry.runs == len(values)
        assert entry.p50_ms == pytest.approx(cuts[49] / 1e6)
        assert entry.p95_ms == pytest.approx(cuts[94] / 1e6)
        assert entry.mean_ms == pytest.approx(statistics.fmean(values) / 1e6)
        assert entry.max_ms == max(values) / 1e6
    assert sum(entry.count for entry in stats.values()) == 3000

    # A window: only the second half of the events.
    half = base + 1500 * 1_000 * MS
    windowed = {entry.node_type: entry for entry in node_stats(store, since=half)}
    assert sum(entry.count for entry in windowed.values()) == 1500
    first_half = node_stats(store, until=half)
    assert sum(entry.count for entry in first_half) == 1500
    assert node_stats(store, since=base + 10**18) == []
