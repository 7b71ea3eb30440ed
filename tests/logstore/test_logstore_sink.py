"""The log store sink behind the real engine and telemetry pipeline: what a job emits is
searchable, its timeline drawn from the store matches the job's result, and the sink applies
its retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.graph.validation import validate_prompt
from flowscope.logstore import LogStore, LogStoreSink, job_timeline, node_stats, store_path
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.pipeline import TelemetryPipeline

SERVICE = ServiceInfo(
    name="flowscope", version="0.1.0", environment="test", node_name="n1", host_name="host-1"
)


def prompt(divisor: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 40}, "_meta": {"title": "Forty"}},
        "2": {"class_type": "IntMath", "inputs": {"a": ["1", 0], "b": 2, "operation": "add"}},
        "3": {
            "class_type": "IntMath",
            "inputs": {"a": ["2", 0], "b": divisor, "operation": "divide"},
        },
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
    }


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        directories = Directories.under(tmp_path)
        self.registry, _ = load_catalog(directories)
        self.bus = EventBus()
        self.sink = LogStoreSink(store_path(tmp_path), service=SERVICE, flush_interval_s=0.01)
        self.pipeline = TelemetryPipeline(self.bus, [self.sink])
        self.executor = Executor(self.registry, bus=self.bus)

    def run(self, divisor: int, **request: Any) -> JobResult:
        validation = validate_prompt(prompt(divisor), self.registry.schema)
        assert validation.ok, validation.node_errors
        result = self.executor.execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs, **request)
        )
        assert self.sink.wait_idle()
        return result


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.pipeline.close()


def test_a_job_is_searchable_and_drawn_from_the_store(rig: Rig) -> None:
    ok = rig.run(2, job_id="job-ok", workflow_id="wf-8a2f1e9b", user_id="ada")
    cached = rig.run(2, job_id="job-cached", workflow_id="wf-8a2f1e9b", user_id="ada")
    failed = rig.run(0, job_id="job-failed", workflow_id="wf-8a2f1e9b", user_id="ada")
    assert (ok.status, cached.status, failed.status) == ("success", "success", "error")
    store = rig.sink.store

    errors = store.search("workflow_id:wf-8a2f1e9b AND level:ERROR")
    assert [e["event.action"] for e in errors] == ["job.failed", "node.failed"]
    error = errors[1]
    assert error["job.id"] == "job-failed"
    assert error["event.action"] == "node.failed"
    assert error["node.id"] == "3"
    assert "by zero" in error["error.message"]
    assert error["service.environment"] == "test"
    assert len(error["event.id"]) == 36  # stamped by the pipeline
    assert store.count('"by zero"') == 2  # the node's failure and the job's
    assert store.count("node.inputs.operation:divide and node.inputs.b:0") == 1
    assert store.count("job.id:job-cached and event.action:node.cached") == 4

    timeline = job_timeline(store, "job-ok")
    assert timeline is not None
    assert timeline.status == "succeeded"
    assert [span.node_id for span in timeline.spans] == [r.node_id for r in ok.nodes]
    for span, record in zip(timeline.spans, ok.nodes, strict=True):
        assert span.status == "succeeded"
        assert span.duration_ns / 1e6 == pytest.approx(record.duration_ms, abs=1e-3)
        assert 0 <= span.offset_ns <= timeline.duration_ns
    assert timeline.spans[0].title == "Forty"

    failed_timeline = job_timeline(store, "job-failed")
    assert failed_timeline is not None
    assert failed_timeline.status == "failed"
    assert [s.status for s in failed_timeline.spans] == ["cached", "cached", "failed"]

    stats = {s.node_type: s for s in node_stats(store)}
    assert stats["IntMath"].count == 6
    assert stats["IntMath"].failed == 1
    assert stats["IntMath"].cached == 3
    assert stats["PreviewAny"].count == 2


def test_the_sink_prunes_by_age(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    old = time.time_ns() - 3 * 86_400 * 10**9
    with LogStore(path) as store:
        store.insert([{"@timestamp": "2020-01-01T00:00:00Z", "event.id": "ancient"}])
    sink = LogStoreSink(path, retention=timedelta(days=1), flush_interval_s=0.01)
    try:
        sink.offer(
            Event(Action.WORKER_STARTED, "worker started", old, Level.INFO, {"event.id": "o"})
        )
        sink.offer(
            Event(
                Action.WORKER_STARTED,
                "worker started",
                time.time_ns(),
                Level.INFO,
                {"event.id": "new"},
            )
        )
        assert sink.wait_idle()
        deadline = time.monotonic() + 5
        while sink.store.count() != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [d["event.id"] for d in sink.store.search()] == ["new"]
        assert sink.pruned >= 2
        assert sink.dropped == 0
    finally:
        sink.close()
