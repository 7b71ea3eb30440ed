"""The Prometheus sink: real jobs through the real engine and telemetry pipeline, scraped in both
exposition formats and parsed with prometheus_client's own parsers."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.graph.validation import validate_prompt
from flowscope.nodes import ProgressBar
from flowscope.nodes.catalog import load_catalog
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber, Level
from flowscope.telemetry.metrics_http import MetricsHTTPServer, wants_openmetrics
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.metrics import MetricsSink
from flowscope.telemetry.sinks.queued import QueuedSink

torch.set_num_threads(1)

# What Prometheus 2.x sends when it scrapes.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ALLOWED_LABELS = {"node_type", "outcome", "cached", "le", "device", "family", "sink"}


class Jobs:
    """The built-in nodes on the real engine; one pipeline feeds the MetricsSink, and an
    in-memory subscriber keeps the events to compare against."""

    def __init__(self, tmp_path: Path, extra_nodes: dict[str, type] | None = None) -> None:
        directories = Directories.under(tmp_path)
        directories.ensure()
        self.registry, _ = load_catalog(directories)
        if extra_nodes:
            self.registry.register_mappings(extra_nodes, python_module="tests", builtin=True)
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus)
        self.sink = MetricsSink()
        self.pipeline = TelemetryPipeline(self.bus, [self.sink])
        self.executor = Executor(self.registry, bus=self.bus)

    def run(self, prompt: dict[str, Any], job_id: str | None = None) -> JobResult:
        validation = validate_prompt(prompt, self.registry.schema)
        assert validation.ok and not validation.node_errors, validation.node_errors
        request = JobRequest(prompt=validation.prompt, outputs=validation.outputs)
        if job_id is not None:
            request.job_id = job_id
        return self.executor.execute(request)

    def trace_id(self, job_id: str) -> str:
        (started,) = [e for e in self.events.of(Action.JOB_STARTED) if e.get("job.id") == job_id]
        trace_id: str = started.get("trace.id")
        return trace_id

    def close(self) -> None:
        self.pipeline.close()


def arithmetic(b: int, operation: str = "add") -> dict[str, Any]:
    """40 <operation> b, shown by PreviewAny; `divide` by 0 fails in IntMath."""
    return {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 40}},
        "2": {"class_type": "IntMath", "inputs": {"a": ["1", 0], "b": b, "operation": operation}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def openmetrics_samples(sink: MetricsSink) -> list[Sample]:
    body, content_type = sink.render(openmetrics=True)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    return [s for family in parse_openmetrics(body.decode()) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly these labels, or None."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def exemplar_trace_ids(samples: list[Sample], name: str, **labels: str) -> list[str]:
    return [
        s.exemplar.labels["trace_id"]
        for s in samples
        if s.name == name
        and s.exemplar is not None
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    jobs = Jobs(tmp_path)
    yield jobs
    jobs.close()


@pytest.fixture
def three_jobs(jobs: Jobs) -> dict[str, str]:
    """A job that succeeds, the same job again (every node cached), and one whose IntMath fails.
    Returns the job ids."""
    ids = {"first": "job-first", "cached": "job-cached", "failed": "job-failed"}
    assert jobs.run(arithmetic(2), ids["first"]).status == "success"
    assert jobs.run(arithmetic(2), ids["cached"]).status == "success"
    assert jobs.run(arithmetic(0, "divide"), ids["failed"]).status == "error"
    return ids


def test_jobs_and_nodes_are_counted_by_outcome_and_cache(
    jobs: Jobs, three_jobs: dict[str, str]
) -> None:
    samples = openmetrics_samples(jobs.sink)
    assert value(samples, "flowscope_jobs_total", outcome="success") == 2
    assert value(samples, "flowscope_jobs_total", outcome="failure") == 1
    # Known outcomes are exposed from zero, so rate() and alerts see them before the first one.
    assert value(samples, "flowscope_jobs_total", outcome="interrupted") == 0
    assert value(samples, "flowscope_jobs_running") == 0
    executions = "flowscope_node_executions_total"
    assert value(samples, executions, node_type="IntMath", outcome="success", cached="false") == 1
    assert value(samples, executions, node_type="IntMath", outcome="success", cached="true") == 1
    assert value(samples, executions, node_type="IntMath", outcome="failure", cached="false") == 1

    # Every node event of the three jobs is counted once, under its type, outcome and cache.
    expected: Counter[tuple[str, str, str]] = Counter()
    for event in jobs.events.events:
        if event.action in (Action.NODE_SUCCEEDED, Action.NODE_FAILED, Action.NODE_CACHED):
            outcome = "failure" if event.action is Action.NODE_FAILED else "success"
            cached = "true" if event.action is Action.NODE_CACHED else "false"
            expected[event.get("node.type"), outcome, cached] += 1
    counted = {
        (s.labels["node_type"], s.labels["outcome"], s.labels["cached"]): s.value
        for s in samples
        if s.name == executions
    }
    assert counted == expected


def test_durations_match_the_events_and_cached_nodes_are_not_timed(
    jobs: Jobs, three_jobs: dict[str, str]
) -> None:
    samples = openmetrics_samples(jobs.sink)
    ran = [e for e in jobs.events.of(Action.NODE_SUCCEEDED) if e.get("node.type") == "IntMath"]
    intmath = {"node_type": "IntMath"}
    assert (
        value(samples, "flowscope_node_duration_seconds_count", **intmath, outcome="success") == 1
    )
    assert value(samples, "flowscope_node_duration_seconds_sum", **intmath, outcome="success") == (
        pytest.approx(ran[0].get("event.duration") / 1e9)
    )
    assert (
        value(samples, "flowscope_node_duration_seconds_count", **intmath, outcome="failure") == 1
    )
    outcomes = {s.labels["outcome"] for s in samples if s.name.startswith("flowscope_node_dur")}
    assert outcomes == {"success", "failure"}

    finished = [e for e in jobs.events.events if e.action is Action.JOB_SUCCEEDED]
    total = sum(e.get("event.duration") for e in finished) / 1e9
    assert value(samples, "flowscope_job_duration_seconds_count", outcome="success") == 2
    assert value(samples, "flowscope_job_duration_seconds_sum", outcome="success") == (
        pytest.approx(total)
    )
    # A histogram's buckets are cumulative: +Inf holds every observation.
    bucket = "flowscope_job_duration_seconds_bucket"
    assert value(samples, bucket, outcome="success", le="+Inf") == 2


def test_no_id_is_a_label_and_exemplars_carry_the_trace_id(
    jobs: Jobs, three_jobs: dict[str, str]
) -> None:
    samples = openmetrics_samples(jobs.sink)
    ids = {
        str(event.get(key))
        for event in jobs.events.events
        for key in ("job.id", "trace.id", "span.id", "transaction.id", "event.id", "node.id")
        if event.get(key) is not None
    }
    for sample in samples:
        assert set(sample.labels) <= ALLOWED_LABELS, sample
        assert not ids & set(sample.labels.values()), sample

    failed = jobs.trace_id(three_jobs["failed"])
    cached = jobs.trace_id(three_jobs["cached"])
    bucket = "flowscope_node_duration_seconds_bucket"
    assert exemplar_trace_ids(samples, bucket, node_type="IntMath", outcome="failure") == [failed]
    assert exemplar_trace_ids(
        samples, "flowscope_node_executions_total", node_type="IntMath", cached="true"
    ) == [cached]
    assert exemplar_trace_ids(samples, "flowscope_jobs_total", outcome="failure") == [failed]
    # The job histogram keeps the latest job per bucket: the cached re-run.
    assert cached in exemplar_trace_ids(
        samples, "flowscope_job_duration_seconds_bucket", outcome="success"
    )


def test_the_classic_text_format_has_the_same_values_and_no_exemplars(
    jobs: Jobs, three_jobs: dict[str, str]
) -> None:
    body, content_type = jobs.sink.render(openmetrics=False)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b" # {" not in body
    samples = [s for family in parse_text(body.decode()) for s in family.samples]
    assert value(samples, "flowscope_jobs_total", outcome="success") == 2
    failed = {"node_type": "IntMath", "outcome": "failure"}
    assert value(samples, "flowscope_node_duration_seconds_count", **failed) == 1


def test_jobs_running_counts_the_job_while_it_runs(tmp_path: Path) -> None:
    seen: list[float | None] = []

    class ReadRunningJobs:
        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"value": ("INT", {})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value: int) -> dict[str, Any]:
            seen.append(jobs.sink.registry.get_sample_value("flowscope_jobs_running"))
            return {"ui": {"text": [str(value)]}}

    jobs = Jobs(tmp_path, {"ReadRunningJobs": ReadRunningJobs})
    try:
        prompt = {
            "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
            "2": {"class_type": "ReadRunningJobs", "inputs": {"value": ["1", 0]}},
        }
        assert jobs.run(prompt).status == "success"
        assert seen == [1.0]
        assert jobs.sink.registry.get_sample_value("flowscope_jobs_running") == 0
    finally:
        jobs.close()


def test_an_interrupted_job_counts_its_running_node_as_interrupted(tmp_path: Path) -> None:
    started = threading.Event()

    class SpinUntilInterrupted:
        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": {"seconds": ("FLOAT", {"default": 10.0})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, seconds: float) -> tuple[int]:
            started.set()
            bar = ProgressBar(0)  # each update is an interrupt check
            deadline = time.monotonic() + seconds
            steps = 0
            while time.monotonic() < deadline:
                steps += 1
                bar.update_absolute(steps, 0)
                time.sleep(0.001)
            return (steps,)

    jobs = Jobs(tmp_path, {"SpinUntilInterrupted": SpinUntilInterrupted})
    try:

        def interrupt() -> None:
            started.wait(10)
            time.sleep(0.02)
            jobs.executor.interrupt("job-stopped")

        thread = threading.Thread(target=interrupt)
        thread.start()
        prompt = {
            "1": {"class_type": "SpinUntilInterrupted", "inputs": {"seconds": 10.0}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        }
        assert jobs.run(prompt, "job-stopped").status == "interrupted"
        thread.join()
        samples = openmetrics_samples(jobs.sink)
        assert value(samples, "flowscope_jobs_total", outcome="interrupted") == 1
        assert value(samples, "flowscope_jobs_running") == 0
        spin = {"node_type": "SpinUntilInterrupted", "outcome": "interrupted"}
        assert value(samples, "flowscope_node_executions_total", **spin, cached="false") == 1
        assert value(samples, "flowscope_node_duration_seconds_count", **spin) == 1
        spun = value(samples, "flowscope_node_duration_seconds_sum", **spin)
        assert spun is not None and 0.02 <= spun < 10
        trace_id = jobs.trace_id("job-stopped")
        assert exemplar_trace_ids(samples, "flowscope_node_duration_seconds_bucket", **spin) == [
            trace_id
        ]
        # The node downstream never started: it is in no metric.
        assert not any(s.labels.get("node_type") == "PreviewAny" for s in samples)
    finally:
        jobs.close()


class StuckSink(QueuedSink):
    """A real queued sink whose destination hangs until released: it holds one event and drops
    the rest."""

    def __init__(self) -> None:
        super().__init__("stuck", capacity=1, batch_size=1000, flush_interval_s=60)
        self.release = threading.Event()

    def write_batch(self, events: Any) -> None:
        self.release.wait(10)


def test_telemetry_drops_are_counted_per_sink(tmp_path: Path) -> None:
    directories = Directories.under(tmp_path)
    directories.ensure()
    registry, _ = load_catalog(directories)
    bus = EventBus()
    stuck, metrics = StuckSink(), MetricsSink()
    pipeline = TelemetryPipeline(bus, [stuck, metrics], report_interval_s=3600)
    try:
        validation = validate_prompt(arithmetic(2), registry.schema)
        Executor(registry, bus=bus).execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs)
        )
        reported = stuck.dropped
        assert reported > 0
        pipeline.report_drops()  # the report is itself an event, which the stuck sink drops too
        dropped = metrics.registry.get_sample_value(
            "flowscope_telemetry_dropped_total", {"sink": "stuck"}
        )
        assert dropped == reported
        assert metrics.dropped == 0
    finally:
        stuck.release.set()
        pipeline.close()


def _event(action: Action, **fields: Any) -> Event:
    return Event(action, action.value, time.time_ns(), Level.INFO, fields)


def test_gpu_memory_and_model_events() -> None:
    """Built by hand: the engine reports GPU memory only on CUDA, and the models layer that emits
    model.* events is not written yet; these are the fields both promise."""
    sink = MetricsSink()
    gib = 1 << 30
    trace = {"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736", "job.id": "j", "span.id": "s"}
    node = {"node.type": "KSampler", "event.duration": 2_000_000_000}
    for peak, device in ((3 * gib, {"gpu.device": "cuda:1"}), (20 * gib, {})):
        memory = {"gpu.memory.peak_bytes": peak, **device}
        assert sink.offer(_event(Action.NODE_SUCCEEDED, **trace, **node, **memory))
    get = sink.registry.get_sample_value
    peak_bucket = "flowscope_gpu_memory_peak_bytes_bucket"
    labels = {"node_type": "KSampler", "device": "cuda:1"}
    assert get(peak_bucket, {**labels, "le": floatToGoString(2 * gib)}) == 0
    assert get(peak_bucket, {**labels, "le": floatToGoString(4 * gib)}) == 1
    # Without gpu.device the peak is still a CUDA figure.
    assert get("flowscope_gpu_memory_peak_bytes_count", {**labels, "device": "cuda"}) == 1

    model = {"model.family": "sdxl", "model.device": "cuda:0", "model.size_bytes": 6_938_000_000}
    sink.offer(_event(Action.MODEL_LOADED, **trace, **model, **{"event.duration": 2_500_000_000}))
    assert get("flowscope_models_loaded", {"device": "cuda:0"}) == 1
    assert get("flowscope_model_memory_bytes", {"device": "cuda:0"}) == 6_938_000_000
    assert get("flowscope_model_load_seconds_sum", {"family": "sdxl"}) == 2.5
    sink.offer(_event(Action.MODEL_UNLOADED, **model))
    assert get("flowscope_models_loaded", {"device": "cuda:0"}) == 0
    assert get("flowscope_model_memory_bytes", {"device": "cuda:0"}) == 0


def test_queue_metrics_are_set_by_the_caller() -> None:
    sink = MetricsSink()
    sink.set_queue_depth(3)
    sink.observe_queue_wait(0.7, trace_id="0af7651916cd43dd8448eb211c80319c")
    sink.observe_queue_wait(2.0)
    samples = openmetrics_samples(sink)
    assert value(samples, "flowscope_queue_depth") == 3
    assert value(samples, "flowscope_queue_wait_seconds_count") == 2
    assert exemplar_trace_ids(samples, "flowscope_queue_wait_seconds_bucket") == [
        "0af7651916cd43dd8448eb211c80319c"
    ]


def test_a_malformed_event_is_counted_as_dropped_and_never_raises() -> None:
    sink = MetricsSink()
    bad = _event(Action.NODE_SUCCEEDED, **{"node.type": "X", "event.duration": "slow"})
    assert sink.offer(bad) is False
    assert sink.dropped == 1
    good = _event(Action.NODE_SUCCEEDED, **{"node.type": "X", "event.duration": 1_000_000})
    assert sink.offer(good) is True
    assert (
        sink.registry.get_sample_value(
            "flowscope_node_duration_seconds_count", {"node_type": "X", "outcome": "success"}
        )
        == 1
    )
    # A job end without its start (a sink attached mid-job) never drives the gauge negative.
    sink.offer(_event(Action.JOB_CANCELLED, **{"job.id": "never-started"}))
    assert sink.registry.get_sample_value("flowscope_jobs_running") == 0
    assert sink.registry.get_sample_value("flowscope_jobs_total", {"outcome": "cancelled"}) == 1


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/plain;version=0.0.4", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ("application/openmetrics-text;q=0.2,text/plain;q=0.9", False),
        ("application/openmetrics-text;q=0", False),
    ],
)
def test_content_negotiation(accept: str | None, openmetrics: bool) -> None:
    assert wants_openmetrics(accept) is openmetrics


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_http_endpoint_serves_both_formats(jobs: Jobs, three_jobs: dict[str, str]) -> None:
    with MetricsHTTPServer(jobs.sink, port=0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, content_type, body = _get(server.url, PROMETHEUS_ACCEPT)
        assert status == 200
        assert content_type.startswith("application/openmetrics-text; version=1.0.0")
        assert body.endswith("# EOF\n")
        samples = [s for family in parse_openmetrics(body) for s in family.samples]
        assert exemplar_trace_ids(samples, "flowscope_jobs_total", outcome="failure") == [
            jobs.trace_id(three_jobs["failed"])
        ]

        status, content_type, body = _get(server.url)
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        samples = [s for family in parse_text(body) for s in family.samples]
        assert value(samples, "flowscope_jobs_total", outcome="success") == 2

        status, _, body = _get(f"http://127.0.0.1:{server.port}/")
        assert status == 404
        assert "/metrics" in body


def test_a_port_in_use_is_a_clear_error() -> None:
    in_use = r"cannot serve metrics on 127\.0\.0\.1:\d+.*--metrics-port"
    with MetricsHTTPServer(MetricsSink()) as taken, pytest.raises(OSError, match=in_use):
        MetricsHTTPServer(MetricsSink(), port=taken.port)
