"""The traces sink: real engine jobs → spans with the events' ids → OTLP/HTTP protobuf → a real
HTTP receiver that decodes what a collector would receive."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
from otlp_receiver import OtlpReceiver, ReceivedSpan

from flowscope.engine import Executor, JobRequest, JobResult
from flowscope.engine.memory import MemoryProbe
from flowscope.graph.validation import validate_prompt
from flowscope.nodes import ExecutionBlocker, check_interrupted
from flowscope.nodes.catalog import load_catalog
from flowscope.nodes.graph_builder import GraphBuilder
from flowscope.nodes.registry import NodeRegistry
from flowscope.storage.directories import Directories
from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks._otel_attributes import resource_for
from flowscope.telemetry.sinks._otel_delivery import traces_endpoint
from flowscope.telemetry.sinks._otel_spans import TraceAssembler
from flowscope.telemetry.sinks.traces import TraceSink

torch.set_num_threads(1)

STATUS_UNSET, STATUS_ERROR = 0, 2
SERVICE = ServiceInfo(
    name="flowscope", version="9.9.9", environment="test", node_name="gpu-7", host_name="render-1"
)


class DoubleByExpansion:
    """Expands into IntMath(value * 2): its node runs inside the expanding node."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "expand"

    def expand(self, value: int) -> dict[str, Any]:
        graph = GraphBuilder()
        double = graph.node("IntMath", a=value, b=2, operation="multiply")
        return {"result": (double.out(0),), "expand": graph.finalize()}


class PassIfPositive:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value: int) -> tuple[Any]:
        return (value if value > 0 else ExecutionBlocker("not positive"),)


class InterruptHere:
    """Interrupts its own job while running, as a user pressing cancel would."""

    executors: ClassVar[list[Executor]] = []

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value: int) -> tuple[int]:
        self.executors[-1].interrupt()
        check_interrupted()
        return (value,)


def _node(class_type: str, title: str | None = None, **inputs: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"class_type": class_type, "inputs": inputs}
    if title is not None:
        spec["_meta"] = {"title": title}
    return spec


def _prompt(b: int = 3, operation: str = "multiply") -> dict[str, Any]:
    return {
        "1": _node("PrimitiveInt", "Six", value=6),
        "2": _node("IntMath", a=["1", 0], b=b, operation=operation),
        "3": _node("PreviewAny", source=["2", 0]),
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> NodeRegistry:
    registry, _ = load_catalog(Directories.under(tmp_path_factory.mktemp("base")))
    registry.register_mappings(
        {
            "DoubleByExpansion": DoubleByExpansion,
            "PassIfPositive": PassIfPositive,
            "InterruptHere": InterruptHere,
        },
        python_module="tests",
        builtin=True,
    )
    return registry


class Engine:
    """The real executor on a bus with the telemetry pipeline, as the CLI and server wire it."""

    def __init__(self, registry: NodeRegistry, sink: TraceSink) -> None:
        self.registry = registry
        self.bus = EventBus()
        self.events = InMemorySubscriber(self.bus)
        self.pipeline = TelemetryPipeline(self.bus, [sink], report_interval_s=3600)
        self.executor = Executor(registry, bus=self.bus, memory_probe=MemoryProbe(0))

    def run(self, prompt: dict[str, Any], **request: Any) -> JobResult:
        validation = validate_prompt(prompt, self.registry.schema)
        assert validation.ok and not validation.node_errors, validation.node_errors
        return self.executor.execute(
            JobRequest(prompt=validation.prompt, outputs=validation.outputs, **request)
        )

    def job_events(self, job_id: str) -> list[Event]:
        return [e for e in self.events.events if e.get("job.id") == job_id]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _sink(receiver: OtlpReceiver, **options: Any) -> TraceSink:
    return TraceSink(endpoint=receiver.endpoint, service=SERVICE, **options)


def _event(events: list[Event], action: Action, node_id: str | None = None) -> Event:
    (found,) = [
        e for e in events if e.action is action and (node_id is None or e.get("node.id") == node_id)
    ]
    return found


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.span_id: span for span in spans}


def test_a_job_is_one_trace_built_from_the_ids_and_times_its_events_carry(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    sink = _sink(receiver)
    engine = Engine(registry, sink)
    result = engine.run(_prompt(), workflow_id="wf-8a2f", user_id="ana")
    assert result.status == "success"
    assert sink.force_flush()
    spans = receiver.wait_for_spans(4)
    events = engine.job_events(result.job_id)
    started = _event(events, Action.JOB_STARTED)
    finished = _event(events, Action.JOB_SUCCEEDED)

    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    assert len(spans) == 4
    assert {s.trace_id for s in spans} == {started.get("trace.id")}
    (job,) = [s for s in spans if not s.parent_id]
    assert job.span_id == started.get("transaction.id") == started.get("span.id")
    assert job.name == "job wf-8a2f"
    assert job.span.status.code == STATUS_UNSET
    assert job.attributes["job.id"] == result.job_id
    assert job.attributes["user.id"] == "ana"
    assert job.attributes["job.nodes_total"] == 3
    assert job.attributes["event.duration"] == finished.get("event.duration")
    assert job.span.start_time_unix_nano == min(
        started.time_ns, finished.time_ns - finished.get("event.duration")
    )
    assert job.span.end_time_unix_nano == finished.time_ns

    nodes = _by_id([s for s in spans if s is not job])
    for node_id, node_type in (("1", "PrimitiveInt"), ("2", "IntMath"), ("3", "PreviewAny")):
        begin = _event(events, Action.NODE_STARTED, node_id)
        end = _event(events, Action.NODE_SUCCEEDED, node_id)
        span = nodes[end.get("span.id")]
        assert begin.get("span.id") == end.get("span.id")
        assert span.parent_id == job.span_id
        assert span.name == f"node {node_type}"
        attributes = span.attributes
        assert attributes["node.id"] == node_id
        assert attributes["node.type"] == node_type
        assert attributes["node.cached"] is False
        assert attributes["process.memory.peak_bytes"] == end.get("process.memory.peak_bytes") > 0
        assert attributes["node.duration_ms"] == end.get("node.duration_ms")
        # The span runs from node.started (or earlier, if the measured duration says so) to
        # the terminal event, and is never shorter than the duration the event reports.
        duration = end.get("event.duration")
        assert span.span.end_time_unix_nano == end.time_ns
        assert span.span.start_time_unix_nano == min(begin.time_ns, end.time_ns - duration)
        assert span.span.end_time_unix_nano - span.span.start_time_unix_nano >= duration
        assert job.span.start_time_unix_nano <= span.span.start_time_unix_nano
        assert span.span.end_time_unix_nano <= job.span.end_time_unix_nano
    by_node = {s.attributes["node.id"]: s for s in nodes.values()}
    assert by_node["1"].attributes["node.title"] == "Six"
    assert by_node["2"].attributes["node.inputs.b"] == 3  # node.inputs flattened, as in ECS
    assert by_node["2"].attributes["node.inputs.operation"] == "multiply"

    resource = job.resource
    assert resource["service.name"] == "flowscope"
    assert resource["service.version"] == "9.9.9"
    assert resource["deployment.environment.name"] == "test"
    assert resource["host.name"] == "render-1"
    assert resource["service.instance.id"] == "gpu-7"
    assert job.scope == "flowscope"
    engine.pipeline.close()
    assert sink.dropped == 0 and sink.spans_exported == 4 and sink.open_jobs == 0


def test_a_failing_node_span_has_status_error_and_the_exception_of_its_event(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    sink = _sink(receiver)
    engine = Engine(registry, sink)
    result = engine.run(_prompt(b=0, operation="divide"))
    assert result.status == "error"
    sink.force_flush()
    spans = receiver.wait_for_spans(3)
    events = engine.job_events(result.job_id)
    failed = _event(events, Action.NODE_FAILED, "2")
    job_failed = _event(events, Action.JOB_FAILED)

    assert len(spans) == 3  # the job, PrimitiveInt and IntMath: PreviewAny never ran
    span = _by_id(spans)[failed.get("span.id")]
    assert span.span.status.code == STATUS_ERROR
    assert span.span.status.message == failed.get("error.message")
    (exception,) = span.events("exception")
    assert exception["exception.type"] == failed.get("error.type") == "ValueError"
    assert exception["exception.message"] == failed.get("error.message")
    assert "cannot divide 6 by zero" in exception["exception.message"]
    assert exception["exception.stacktrace"] == failed.get("error.stack_trace")
    assert span.attributes["error.type"] == "ValueError"
    assert span.span.end_time_unix_nano == failed.time_ns

    job = _by_id(spans)[job_failed.get("span.id")]
    assert job.parent_id == ""
    assert job.span.status.code == STATUS_ERROR
    (job_exception,) = job.events("exception")
    assert job_exception["exception.message"] == job_failed.get("error.message")
    assert job_exception["node.id"] == "2" and job_exception["node.type"] == "IntMath"
    assert job_exception["exception.stacktrace"] == failed.get("error.stack_trace")
    assert "node.id" not in job.attributes  # the failing node is named in the exception only
    engine.pipeline.close()


def test_cached_nodes_are_zero_length_child_spans_in_the_next_jobs_trace(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    sink = _sink(receiver)
    engine = Engine(registry, sink)
    first = engine.run(_prompt())
    second = engine.run(_prompt())
    sink.force_flush()
    spans = receiver.wait_for_spans(8)
    events = engine.job_events(second.job_id)
    trace_id = events[0].get("trace.id")
    assert trace_id != engine.job_events(first.job_id)[0].get("trace.id")

    cached = [s for s in spans if s.trace_id == trace_id and s.parent_id]
    assert len(cached) == 3
    job_span = events[0].get("transaction.id")
    for span in cached:
        event = _event(events, Action.NODE_CACHED, span.attributes["node.id"])
        assert span.span_id == event.get("span.id")
        assert span.parent_id == job_span
        assert span.attributes["node.cached"] is True
        assert span.span.start_time_unix_nano == span.span.end_time_unix_nano == event.time_ns
    engine.pipeline.close()


def test_expanded_nodes_nest_under_their_node_and_a_blocked_node_notes_why(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    sink = _sink(receiver)
    engine = Engine(registry, sink)
    prompt = {
        "1": _node("PrimitiveInt", value=5),
        "2": _node("DoubleByExpansion", value=["1", 0]),
        "3": _node("PreviewAny", source=["2", 0]),
        "4": _node("PrimitiveInt", value=-1),
        "5": _node("PassIfPositive", value=["4", 0]),
        "6": _node("PreviewAny", source=["5", 0]),
    }
    result = engine.run(prompt)
    assert result.status == "success"
    sink.force_flush()
    events = engine.job_events(result.job_id)
    spans = receiver.wait_for_spans(len({e.get("span.id") for e in events}))
    by_node = {s.attributes.get("node.id"): s for s in spans if s.parent_id}

    expander = by_node["2"]
    (inner_id,) = [n for n in by_node if n not in {"1", "2", "3", "4", "5", "6"}]
    assert by_node[inner_id].name == "node IntMath"
    assert by_node[inner_id].parent_id == expander.span_id
    assert expander.parent_id == events[0].get("transaction.id")
    assert expander.events("node.expanded")[0]["node.expanded_count"] == 1
    # The expanding node's span covers the work it expanded into.
    assert expander.span.start_time_unix_nano <= by_node[inner_id].span.start_time_unix_nano
    assert expander.span.end_time_unix_nano >= by_node[inner_id].span.end_time_unix_nano

    # PassIfPositive returns a blocker; PreviewAny, fed it, is the node that is blocked.
    assert by_node["5"].attributes["node.cached"] is False
    blocked = by_node["6"]
    block = _event(events, Action.NODE_BLOCKED, "6")
    assert blocked.attributes["node.blocked"] is True
    assert blocked.events("node.blocked")[0]["error.message"] == "not positive"
    assert blocked.span.end_time_unix_nano == block.time_ns
    assert blocked.span.status.code == STATUS_UNSET
    engine.pipeline.close()


def test_an_interrupted_job_ends_its_running_node_as_incomplete_not_as_an_error(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    sink = _sink(receiver)
    engine = Engine(registry, sink)
    InterruptHere.executors.append(engine.executor)
    prompt = {
        "1": _node("PrimitiveInt", value=5),
        "2": _node("InterruptHere", value=["1", 0]),
        "3": _node("PreviewAny", source=["2", 0]),
    }
    result = engine.run(prompt)
    assert result.status == "interrupted"
    sink.force_flush()
    spans = receiver.wait_for_spans(3)
    events = engine.job_events(result.job_id)
    interrupted = _event(events, Action.JOB_INTERRUPTED)
    (job,) = [s for s in spans if not s.parent_id]
    assert job.span.status.code == STATUS_UNSET
    assert [e.name for e in job.span.events] == ["job.interrupted"]
    started = _event(events, Action.NODE_STARTED, "2")
    running = _by_id(spans)[started.get("span.id")]
    assert running.attributes["node.incomplete"] is True
    assert "node.incomplete" not in (started.fields or {})  # the event other sinks see is intact
    assert running.span.end_time_unix_nano == interrupted.time_ns
    assert len(spans) == 3  # PreviewAny never started
    engine.pipeline.close()


def test_without_an_endpoint_spans_are_built_but_nothing_touches_the_network(
    registry: NodeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    connections: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        connections.append(address)
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    sink = TraceSink(service=SERVICE)
    assert not sink.exporting and sink.endpoint is None
    engine = Engine(registry, sink)
    assert engine.run(_prompt()).status == "success"
    assert sink.force_flush()
    assert sink.spans_built == 4
    engine.pipeline.close()
    assert connections == []
    assert sink.dropped == 0


def test_a_dead_collector_costs_counted_spans_never_the_job(registry: NodeRegistry) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = TraceSink(endpoint=f"http://127.0.0.1:{port}", service=SERVICE, timeout_s=0.5)
    engine = Engine(registry, sink)
    results = [engine.run(_prompt()) for _ in range(2)]
    assert [r.status for r in results] == ["success", "success"]
    assert engine.bus.subscriber_errors == 0
    sink.force_flush()
    assert sink.spans_built == 8
    assert sink.dropped == 8 and sink.spans_exported == 0
    assert sink.export_error is not None
    engine.pipeline.report_drops()
    (report,) = engine.events.of(Action.TELEMETRY_DROPPED)
    assert report.get("telemetry.sink") == "traces"
    assert report.get("telemetry.dropped") == 8
    engine.pipeline.close(timeout_s=1.0)


def test_a_full_span_queue_refuses_and_counts_instead_of_dropping_silently(
    registry: NodeRegistry, receiver: OtlpReceiver
) -> None:
    receiver.hold.clear()  # the collector stalls: nothing admitted can leave the queue
    sink = _sink(receiver, max_queue=4, export_interval_s=0.05)
    engine = Engine(registry, sink)
    for _ in range(3):
        engine.run(_prompt(), workflow_id="wf")
    assert sink.wait_idle()
    receiver.hold.set()
    sink.force_flush()
    assert len(receiver.wait_for_spans(4)) == 4
    assert sink.spans_built == 12
    assert sink.spans_exported == 4
    assert sink.dropped == 8
    engine.pipeline.close()


def test_jobs_that_never_end_are_closed_as_incomplete_and_forgotten(
    registry: NodeRegistry,
) -> None:
    engine = Engine(registry, TraceSink(service=SERVICE))
    jobs = [engine.run(_prompt(), workflow_id=f"wf-{n}") for n in range(3)]
    engine.pipeline.close()
    spans: list[Any] = []
    now = [0.0]
    assembler = TraceAssembler(
        resource_for(SERVICE), spans.append, max_jobs=2, idle_timeout_s=60, clock=lambda: now[0]
    )
    for job in jobs:  # each job loses its last event (job.succeeded) and its last node's end
        for event in engine.job_events(job.job_id)[:-2]:
            assembler.add(event)
    # Three jobs, room for two: the oldest is closed at once, with what was known.
    assert assembler.open_jobs == 2 and assembler.jobs_evicted == 1
    first_events = engine.job_events(jobs[0].job_id)
    first = [s for s in spans if s.context.trace_id == int(first_events[0].get("trace.id"), 16)]
    (job_span,) = [s for s in first if s.parent is None]
    assert job_span.name == "job wf-0"
    assert job_span.attributes["job.incomplete"] is True
    open_node = [s for s in first if s.attributes.get("node.incomplete")]
    assert [s.attributes["node.id"] for s in open_node] == ["3"]
    assert job_span.end_time == first_events[-3].time_ns  # the last event it had

    now[0] = 59.0
    assert assembler.evict_idle() == 0
    now[0] = 61.0
    assert assembler.evict_idle() == 2
    assert assembler.open_jobs == 0
    assert sum(1 for s in spans if s.parent is None) == 3
    # The end arrives after all: its spans were sent already, so it is ignored, not doubled.
    sent = len(spans)
    for event in first_events[-2:]:
        assembler.add(event)
    assert len(spans) == sent and assembler.late_events == 2 and assembler.open_jobs == 0


def test_model_loads_and_uploads_are_child_spans_of_the_span_they_happened_in(
    registry: NodeRegistry,
) -> None:
    engine = Engine(registry, TraceSink(service=SERVICE))
    job = engine.run(_prompt())
    engine.pipeline.close()
    events = engine.job_events(job.job_id)
    node_started = _event(events, Action.NODE_STARTED, "2")
    ids = {key: node_started.get(key) for key in ("job.id", "trace.id", "transaction.id")}
    load = Event(
        Action.MODEL_LOADED,
        "model loaded",
        node_started.time_ns + 1_000,
        fields={
            **ids,
            "span.id": node_started.get("span.id"),
            "model.name": "tiny-sd.safetensors",
            "model.family": "sd15",
            "model.size_bytes": 1234,
            "event.duration": 900,
        },
    )
    upload = Event(
        Action.OUTPUT_UPLOADED,
        "output uploaded",
        events[-1].time_ns - 10,
        fields={**ids, "span.id": ids["transaction.id"], "event.duration": 500},
    )
    spans: list[Any] = []
    assembler = TraceAssembler(resource_for(SERVICE), spans.append)
    for event in [*events[:-1], load, upload, events[-1]]:
        assembler.add(event)
    by_name = {s.name: s for s in spans}
    model = by_name["model load tiny-sd.safetensors"]
    assert model.parent.span_id == int(node_started.get("span.id"), 16)
    assert model.context.trace_id == int(ids["trace.id"], 16)
    assert model.context.span_id not in {s.context.span_id for s in spans if s is not model}
    assert model.attributes["model.family"] == "sd15"
    assert model.attributes["model.size_bytes"] == 1234
    assert (model.start_time, model.end_time) == (load.time_ns - 900, load.time_ns)
    uploaded = by_name["output upload"]
    assert uploaded.parent.span_id == int(ids["transaction.id"], 16)
    assert uploaded.end_time - uploaded.start_time == 500


def test_the_endpoint_follows_the_otlp_environment_variables() -> None:
    assert traces_endpoint(None, {}) is None
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert traces_endpoint(None, base) == "http://collector:4318/v1/traces"
    signal = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://x.example/otlp/spans"}
    assert traces_endpoint(None, signal) == "https://x.example/otlp/spans"
    assert traces_endpoint("http://tempo:4318", signal) == "http://tempo:4318/v1/traces"
    assert traces_endpoint("http://tempo:4318/v1/traces", {}) == "http://tempo:4318/v1/traces"
    with pytest.raises(ValueError, match=r"'tempo:4318' is not a URL.*http://localhost:4318"):
        traces_endpoint("tempo:4318", {})


def test_the_sink_never_queues_events_that_shape_no_span() -> None:
    sink = TraceSink(service=SERVICE)
    progress = Event(Action.NODE_PROGRESS, "node progress", 1, fields={"trace.id": "1" * 32})
    assert sink.offer(progress)
    assert sink.pending == 0
    sink.close()
