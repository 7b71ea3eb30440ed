"""The Prometheus sink: turns job, node, model and telemetry events into the metrics of
spec/telemetry.md §6.

It is synchronous: there is no I/O, only a few locked adds in prometheus_client (~4 µs for a
node event, exemplars included), so it needs no queue or thread and never drops for lack of room;
`dropped` counts only events it could not read (a malformed field), which the pipeline then
reports like any other sink's drops. Ids never become labels:
the trace id travels in an exemplar `{"trace_id": ...}` on the duration histograms and the
counters, and only the OpenMetrics exposition carries exemplars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics_exposition

from flowscope.telemetry.events import Action, Event

# Pinned rather than taken from prometheus_client, whose "latest" text type changed across the
# versions that pyproject allows; Prometheus parses 0.0.4 in every release.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# prometheus_client leaves the OpenMetrics writer unannotated.
_generate_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics_exposition.generate_latest

# From a 1 ms primitive to a 30 min sampler pass (spec §6).
NODE_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
)  # fmt: skip
JOB_DURATION_BUCKETS = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip
QUEUE_WAIT_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
MODEL_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_GIB = 1 << 30
# Peak CUDA memory of one node run: 256 MiB up to the 141 GiB of an H200.
GPU_MEMORY_BUCKETS = tuple(
    float(int(gib * _GIB))
    for gib in (0.25, 0.5, 1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 192)
)

# The `outcome` label of job metrics, by the job's final action.
JOB_OUTCOMES = {
    Action.JOB_SUCCEEDED: "success",
    Action.JOB_FAILED: "failure",
    Action.JOB_INTERRUPTED: "interrupted",
    Action.JOB_CANCELLED: "cancelled",
    Action.JOB_REJECTED: "rejected",
}
# Nodes still running when their job is stopped did not fail: they count as interrupted.
_STOPPING_ACTIONS = frozenset({Action.JOB_INTERRUPTED, Action.JOB_CANCELLED})

# The GPU memory fields come from CUDA only; the engine names the device when it knows it.
DEFAULT_GPU_DEVICE = "cuda"
DEFAULT_MODEL_DEVICE = "cpu"
UNKNOWN = "unknown"

# One started job's nodes that have not ended: node span id -> (node type, node.started time ns).
_RunningNodes = dict[str, tuple[str, int]]
_Handler = Callable[[Event, dict[str, Any]], None]


def _exemplar(fields: dict[str, Any]) -> dict[str, str] | None:
    trace_id = fields.get("trace.id")
    return {"trace_id": trace_id} if trace_id else None


class MetricsSink:
    """A telemetry sink that keeps Prometheus metrics in `registry` (a private one by default).

    Pass `prometheus_client.REGISTRY` to expose the metrics next to the default process
    collectors. Only one MetricsSink may use a given registry (the names would collide).
    """

    name = "metrics"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.dropped = 0
        self._running: dict[str, _RunningNodes] = {}  # job.id -> its running nodes
        reg = self.registry
        self.node_duration = Histogram(
            "flowscope_node_duration_seconds",
            "Time a node took to run (cached nodes do not run and are not observed).",
            ["node_type", "outcome"],
            buckets=NODE_DURATION_BUCKETS,
            registry=reg,
        )
        self.node_executions = Counter(
            "flowscope_node_executions",
            "Nodes finished, by outcome; cached=true when the result came from the cache.",
            ["node_type", "outcome", "cached"],
            registry=reg,
        )
        self.job_duration = Histogram(
            "flowscope_job_duration_seconds",
            "Time from a job's start to its end.",
            ["outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=reg,
        )
        self.jobs = Counter(
            "flowscope_jobs", "Jobs finished, by outcome.", ["outcome"], registry=reg
        )
        self.queue_wait = Histogram(
            "flowscope_queue_wait_seconds",
            "Time a job waited in the queue before a worker started it.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "flowscope_queue_depth", "Jobs waiting in the queue.", registry=reg
        )
        self.jobs_running = Gauge(
            "flowscope_jobs_running", "Jobs started and not yet finished.", registry=reg
        )
        self.model_load = Histogram(
            "flowscope_model_load_seconds",
            "Time to load a model, by model family.",
            ["family"],
            buckets=MODEL_LOAD_BUCKETS,
            registry=reg,
        )
        self.models_loaded = Gauge(
            "flowscope_models_loaded", "Models held in memory, by device.", ["device"], registry=reg
        )
        self.model_memory = Gauge(
            "flowscope_model_memory_bytes",
            "Bytes of the models held in memory, by device.",
            ["device"],
            registry=reg,
        )
        self.gpu_memory_peak = Histogram(
            "flowscope_gpu_memory_peak_bytes",
            "Peak GPU memory allocated during one node run.",
            ["node_type", "device"],
            buckets=GPU_MEMORY_BUCKETS,
            registry=reg,
        )
        self.telemetry_dropped = Counter(
            "flowscope_telemetry_dropped",
            "Events a telemetry sink lost (fell behind or failed to write).",
            ["sink"],
            registry=reg,
        )
        # labels() validates and takes a lock on every call (~1 µs); a label set's child never
        # changes, so the hot path keeps them. The job outcomes are known: exposed from zero.
        self._node_series: dict[tuple[str, str], tuple[Histogram, Counter]] = {}
        self._cached_series: dict[str, Counter] = {}
        self._job_series = {
            outcome: (self.job_duration.labels(outcome), self.jobs.labels(outcome))
            for outcome in JOB_OUTCOMES.values()
        }
        self._handlers: dict[Action, _Handler] = {
            Action.JOB_STARTED: self._job_started,
            **dict.fromkeys(JOB_OUTCOMES, self._job_finished),
            Action.NODE_STARTED: self._node_started,
            Action.NODE_SUCCEEDED: self._node_ran,
            Action.NODE_FAILED: self._node_ran,
            Action.NODE_CACHED: self._node_cached,
            Action.NODE_BLOCKED: self._node_blocked,
            Action.MODEL_LOADED: self._model_loaded,
            Action.MODEL_UNLOADED: self._model_unloaded,
            Action.TELEMETRY_DROPPED: self._telemetry_dropped,
        }

    # -- the Sink protocol --------------------------------------------------------------
    def offer(self, event: Event) -> bool:
        """Update the metrics for `event` now; False (and counted) if a field was malformed."""
        handler = self._handlers.get(event.action)
        if handler is None or event.fields is None:
            return True
        try:
            handler(event, event.fields)
        except Exception:  # a bad field loses this event's metrics, never the other sinks'
            self.dropped += 1
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Nothing to flush: the metrics live until the process ends and stay scrapeable."""

    # -- what the server calls (the queue is not on the event stream) --------------------
    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def observe_queue_wait(self, seconds: float, trace_id: str | None = None) -> None:
        self.queue_wait.observe(seconds, {"trace_id": trace_id} if trace_id else None)

    # -- exposition ---------------------------------------------------------------------
    def render(self, openmetrics: bool) -> tuple[bytes, str]:
        """The exposition body and its Content-Type; only OpenMetrics carries exemplars."""
        if openmetrics:
            return _generate_openmetrics(self.registry), OPENMETRICS_CONTENT_TYPE
        return generate_latest(self.registry), TEXT_CONTENT_TYPE

    # -- jobs ---------------------------------------------------------------------------
    def _job_started(self, event: Event, fields: dict[str, Any]) -> None:
        job_id = fields["job.id"]
        if job_id not in self._running:
            self._running[job_id] = {}
            self.jobs_running.inc()

    def _job_finished(self, event: Event, fields: dict[str, Any]) -> None:
        action = event.action
        outcome = JOB_OUTCOMES[action]
        # Only jobs seen starting are counted down: a job cancelled while queued never ran.
        running = self._running.pop(fields.get("job.id", ""), None)
        if running is not None:
            self.jobs_running.dec()
            if running and action in _STOPPING_ACTIONS:
                self._nodes_interrupted(running, event.time_ns, fields)
        duration, count = self._job_series[outcome]
        exemplar = _exemplar(fields)
        duration_ns = fields.get("event.duration")
        if duration_ns is not None:
            duration.observe(duration_ns / 1e9, exemplar)
        count.inc(1, exemplar)

    # -- nodes --------------------------------------------------------------------------
    def _node_started(self, event: Event, fields: dict[str, Any]) -> None:
        running = self._running.get(fields.get("job.id", ""))
        if running is not None:
            running[fields["span.id"]] = (fields.get("node.type", UNKNOWN), event.time_ns)

    def _node_ran(self, event: Event, fields: dict[str, Any]) -> None:
        self._forget_node(fields)
        node_type = fields.get("node.type", UNKNOWN)
        outcome = "failure" if event.action is Action.NODE_FAILED else "success"
        duration, count = self._node_run_series(node_type, outcome)
        exemplar = _exemplar(fields)
        duration.observe(fields["event.duration"] / 1e9, exemplar)
        count.inc(1, exemplar)
        peak = fields.get("gpu.memory.peak_bytes")
        if peak is not None:
            device = fields.get("gpu.device", DEFAULT_GPU_DEVICE)
            self.gpu_memory_peak.labels(node_type, device).observe(peak)

    def _node_cached(self, event: Event, fields: dict[str, Any]) -> None:
        node_type = fields.get("node.type", UNKNOWN)
        count = self._cached_series.get(node_type)
        if count is None:
            count = self._cached_series[node_type] = self.node_executions.labels(
                node_type, "success", "true"
            )
        count.inc(1, _exemplar(fields))

    def _node_run_series(self, node_type: str, outcome: str) -> tuple[Histogram, Counter]:
        series = self._node_series.get((node_type, outcome))
        if series is None:
            series = self._node_series[node_type, outcome] = (
                self.node_duration.labels(node_type, outcome),
                self.node_executions.labels(node_type, outcome, "false"),
            )
        return series

    def _node_blocked(self, event: Event, fields: dict[str, Any]) -> None:
        # A blocked node produced nothing and failed nothing: it is not an execution.
        self._forget_node(fields)

    def _forget_node(self, fields: dict[str, Any]) -> None:
        running = self._running.get(fields.get("job.id", ""))
        if running is not None:
            running.pop(fields.get("span.id", ""), None)

    def _nodes_interrupted(
        self, running: _RunningNodes, end_ns: int, fields: dict[str, Any]
    ) -> None:
        exemplar = _exemplar(fields)
        for node_type, started_ns in running.values():
            duration, count = self._node_run_series(node_type, "interrupted")
            duration.observe(max(0, end_ns - started_ns) / 1e9, exemplar)
            count.inc(1, exemplar)

    # -- models and telemetry -----------------------------------------------------------
    def _model_loaded(self, event: Event, fields: dict[str, Any]) -> None:
        # Model events carry model.family, model.size_bytes, model.device (where the weights
        # live; cpu when absent) and, on model.loaded, the load time in event.duration.
        device = fields.get("model.device", DEFAULT_MODEL_DEVICE)
        duration_ns = fields.get("event.duration")
        if duration_ns is not None:
            family = fields.get("model.family", UNKNOWN)
            self.model_load.labels(family).observe(duration_ns / 1e9, _exemplar(fields))
        self.models_loaded.labels(device).inc()
        self.model_memory.labels(device).inc(fields.get("model.size_bytes", 0))

    def _model_unloaded(self, event: Event, fields: dict[str, Any]) -> None:
        device = fields.get("model.device", DEFAULT_MODEL_DEVICE)
        self.models_loaded.labels(device).dec()
        self.model_memory.labels(device).dec(fields.get("model.size_bytes", 0))

    def _telemetry_dropped(self, event: Event, fields: dict[str, Any]) -> None:
        self.telemetry_dropped.labels(fields["telemetry.sink"]).inc(fields["telemetry.dropped"])
