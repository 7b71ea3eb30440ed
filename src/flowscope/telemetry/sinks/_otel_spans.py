"""Building OpenTelemetry spans from the event stream, with the ids the events carry.

The engine gives every job a trace (`trace.id`), a root span (`transaction.id`) and a span per
node run (`span.id` on that node's events), and stamps them on every event. This module turns a
job's events back into finished spans with exactly those ids, so a log line and the span it
belongs to always agree:

- `job <workflow>`: job.started → job.succeeded / failed / interrupted / cancelled; status ERROR
  and an `exception` event on failure (with the failing node's stack trace).
- `node <type>`, child of the job: node.started → node.succeeded / failed; node.cached is a
  zero-length span (`node.cached=true`); node.blocked and node.expanded are span events.
- `model load <name>` and `output upload`, children of the span their event happened in.

The SDK cannot start a live span with a chosen id, so spans are built as `ReadableSpan`s, the
type span processors and exporters take, from the events' times. (The SDK's docstring says
users should not create them; the alternative, a tracer with an id generator fed through a
thread-local, hides the same thing behind a side channel.) Event fields are never modified.

Only finished spans are built: state is kept for running jobs alone, and bounded (`max_jobs`,
`idle_timeout_s`): a job that stops sending events (its end was dropped, say) is closed with
what is known, its spans marked `job.incomplete` / `node.incomplete`; its later events, if any,
are ignored (counted in `late_events`) so that no span is sent twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flowscope import __version__
from flowscope.telemetry.events import Action, Event
from flowscope.telemetry.ids import new_span_id
from flowscope.telemetry.sinks._otel_attributes import to_attributes

SpanCallback = Callable[[ReadableSpan], None]

# Only these actions shape spans; the sink leaves every other event (progress, queue, worker
# events) on the emitting thread.
TRACED_ACTIONS = frozenset(
    {
        Action.JOB_STARTED,
        Action.JOB_SUCCEEDED,
        Action.JOB_FAILED,
        Action.JOB_INTERRUPTED,
        Action.JOB_CANCELLED,
        Action.NODE_STARTED,
        Action.NODE_SUCCEEDED,
        Action.NODE_CACHED,
        Action.NODE_FAILED,
        Action.NODE_BLOCKED,
        Action.NODE_EXPANDED,
        Action.MODEL_LOADED,
        Action.OUTPUT_UPLOADED,
    }
)
_JOB_ENDS = frozenset(
    {Action.JOB_SUCCEEDED, Action.JOB_FAILED, Action.JOB_INTERRUPTED, Action.JOB_CANCELLED}
)
# In the span context or a span event instead, or true of one event rather than of the span.
_NOT_ATTRIBUTES = frozenset(
    {
        "trace.id",
        "span.id",
        "transaction.id",
        "event.id",
        "event.sequence",
        "event.action",
        "sampling.rate",
        "error.message",
        "error.stack_trace",
    }
)
# job.failed names the failing node; on the job span that belongs in the exception event.
_NOT_JOB_ATTRIBUTES = _NOT_ATTRIBUTES | {"node.id", "node.type"}
_JOB_IDENTITY = ("job.id", "workflow.id", "workflow.name", "user.id")
_EVICTED_MEMORY = 10_000  # job span ids remembered after eviction (~1 MB)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("flowscope", __version__)


@dataclass(slots=True)
class _OpenSpan:
    """A span whose end has not been seen yet; fields are merged into attributes at the end."""

    name: str
    context: SpanContext
    parent: SpanContext
    start_ns: int
    fields: dict[str, Any]
    events: list[SpanEvent] = field(default_factory=list)
    blocked_ns: int | None = None  # a fully blocked node sends nothing after node.blocked


@dataclass(slots=True)
class _JobTrace:
    context: SpanContext
    fields: dict[str, Any] = field(default_factory=dict)
    start_ns: int | None = None
    last_event_ns: int = 0
    last_seen: float = 0.0  # monotonic arrival time, for the idle timeout
    nodes: dict[str, _OpenSpan] = field(default_factory=dict)  # by span.id (hex)
    node_spans: dict[str, SpanContext] = field(default_factory=dict)  # node.id -> its span
    known_spans: set[str] = field(default_factory=set)  # span ids (hex) of this job's spans
    failure_stack: str | None = None


class TraceAssembler:
    """Feeds on events (one thread at a time) and calls `on_span` with each finished span."""

    def __init__(
        self,
        resource: Resource,
        on_span: SpanCallback,
        *,
        max_jobs: int = 1_000,
        idle_timeout_s: float = 6 * 3_600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self.resource = resource
        self.on_span = on_span
        self.max_jobs = max_jobs
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.spans_built = 0
        self.jobs_evicted = 0
        self.late_events = 0  # events of jobs already closed by eviction
        self._jobs: OrderedDict[str, _JobTrace] = OrderedDict()  # by transaction.id, LRU order
        self._evicted: OrderedDict[str, None] = OrderedDict()  # recently evicted job spans

    @property
    def open_jobs(self) -> int:
        return len(self._jobs)

    # -- events -------------------------------------------------------------------------
    def add(self, event: Event) -> None:
        """Take one event; events without a job's trace context (or untraced) are ignored."""
        fields = event.fields
        if fields is None or event.action not in TRACED_ACTIONS:
            return
        trace_hex = fields.get("trace.id")
        job_hex = fields.get("transaction.id")
        if not trace_hex or not job_hex:
            return  # e.g. a model loaded outside any job: no trace to join
        action = event.action
        job = self._jobs.get(job_hex)
        if job is None:
            if job_hex in self._evicted:
                self.late_events += 1
                return
            if action is Action.JOB_CANCELLED:
                return  # cancelled while queued: it never ran, so it has no span
            job = self._open_job(trace_hex, job_hex, fields)
        else:
            self._jobs.move_to_end(job_hex)
        job.last_seen = self.clock()
        job.last_event_ns = max(job.last_event_ns, event.time_ns)
        if action is Action.JOB_STARTED:
            job.start_ns = event.time_ns
            job.fields = fields
        elif action in _JOB_ENDS:
            del self._jobs[job_hex]
            self._finish_job(job, event)
        elif action is Action.MODEL_LOADED or action is Action.OUTPUT_UPLOADED:
            self._leaf_span(job, event)
        else:
            self._node_event(job, event)

    def evict_idle(self) -> int:
        """Close the jobs that sent nothing for `idle_timeout_s`; returns how many."""
        deadline = self.clock() - self.idle_timeout_s
        stale = [key for key, job in self._jobs.items() if job.last_seen <= deadline]
        for key in stale:
            self._evict(key)
        return len(stale)

    def close_all(self) -> None:
        """Close every open job as incomplete (shutdown: what was running still shows)."""
        for key in list(self._jobs):
            self._evict(key)

    # -- jobs ---------------------------------------------------------------------------
    def _open_job(self, trace_hex: str, job_hex: str, fields: Mapping[str, Any]) -> _JobTrace:
        while len(self._jobs) >= self.max_jobs:
            self._evict(next(iter(self._jobs)))
        context = SpanContext(int(trace_hex, 16), int(job_hex, 16), False, _SAMPLED)
        job = _JobTrace(context)
        # Until job.started arrives (it may never: a job can fail while being prepared), name
        # the job span from what every job event carries.
        job.fields = {key: fields[key] for key in _JOB_IDENTITY if key in fields}
        job.known_spans.add(job_hex)
        self._jobs[job_hex] = job
        return job

    def _evict(self, key: str) -> None:
        job = self._jobs.pop(key)
        self.jobs_evicted += 1
        self._evicted[key] = None
        if len(self._evicted) > _EVICTED_MEMORY:
            self._evicted.popitem(last=False)
        end = job.last_event_ns
        self._close_nodes(job, end)
        fields = {**job.fields, "job.incomplete": True}
        start = job.start_ns if job.start_ns is not None else end
        self._emit(_job_name(fields), job.context, None, start, end, fields, [], _UNSET, job=True)

    def _finish_job(self, job: _JobTrace, event: Event) -> None:
        end = event.time_ns
        fields = {**job.fields, **(event.fields or {})}
        start = _start(job.start_ns, end, fields.get("event.duration"))
        self._close_nodes(job, end)
        events: list[SpanEvent] = []
        status = _UNSET
        if event.action is Action.JOB_FAILED:
            status = Status(StatusCode.ERROR, fields.get("error.message") or "job failed")
            events.append(_exception(fields, end, job.failure_stack, failed_node=True))
        elif event.action is not Action.JOB_SUCCEEDED:
            # Interrupted or cancelled: stopped on request, not an error of the job itself.
            events.append(SpanEvent(event.action.value, None, end))
        self._emit(
            _job_name(fields), job.context, None, start, end, fields, events, status, job=True
        )

    def _close_nodes(self, job: _JobTrace, end_ns: int) -> None:
        """End the node spans still open when their job ends: a fully blocked node ends where
        it was blocked; any other (interrupted, waiting on lazy inputs) is incomplete."""
        for span in job.nodes.values():
            if span.blocked_ns is not None:
                end = span.blocked_ns
            else:
                end = end_ns
                span.fields = {**span.fields, "node.incomplete": True}  # never the event's dict
            self._emit_open(span, max(end, span.start_ns), _UNSET)
        job.nodes.clear()

    # -- nodes --------------------------------------------------------------------------
    def _node_event(self, job: _JobTrace, event: Event) -> None:
        fields = event.fields or {}
        span_hex = fields.get("span.id")
        if not span_hex:
            return
        action = event.action
        span = job.nodes.get(span_hex)
        if action is Action.NODE_STARTED:
            if span is None:
                job.nodes[span_hex] = self._open_node(job, span_hex, event, event.time_ns)
            return
        if action is Action.NODE_SUCCEEDED or action is Action.NODE_FAILED:
            if span is None:
                start = _start(None, event.time_ns, fields.get("event.duration"))
                span = self._open_node(job, span_hex, event, start)
            else:
                del job.nodes[span_hex]
                span.start_ns = _start(span.start_ns, event.time_ns, fields.get("event.duration"))
                span.fields = {**span.fields, **fields}
            status = _UNSET
            if action is Action.NODE_FAILED:
                job.failure_stack = fields.get("error.stack_trace")
                status = Status(StatusCode.ERROR, fields.get("error.message") or "node failed")
                span.events.append(_exception(fields, event.time_ns, job.failure_stack))
            self._emit_open(span, event.time_ns, status)
        elif action is Action.NODE_CACHED:
            job.nodes.pop(span_hex, None)
            cached = self._open_node(job, span_hex, event, event.time_ns)
            cached.fields = {**cached.fields, "node.cached": True}
            self._emit_open(cached, event.time_ns, _UNSET)
        else:  # blocked or expanded: something that happened during the node's span
            if span is None:
                span = job.nodes[span_hex] = self._open_node(job, span_hex, event, event.time_ns)
            if action is Action.NODE_BLOCKED:
                span.blocked_ns = event.time_ns
                span.fields = {**span.fields, "node.blocked": True}
            span.events.append(_span_event(event))

    def _open_node(self, job: _JobTrace, span_hex: str, event: Event, start_ns: int) -> _OpenSpan:
        fields = event.fields or {}
        context = SpanContext(job.context.trace_id, int(span_hex, 16), False, _SAMPLED)
        node_id = fields.get("node.id")
        parent = job.context
        # A node added by expansion runs inside the node that expanded it.
        parent_node = (event.detail or {}).get("parent_node")
        if parent_node is not None:
            parent = job.node_spans.get(parent_node, parent)
        if node_id is not None:
            job.node_spans[node_id] = context
        job.known_spans.add(span_hex)
        return _OpenSpan(f"node {fields.get('node.type', '?')}", context, parent, start_ns, fields)

    # -- model loads and uploads ---------------------------------------------------------
    def _leaf_span(self, job: _JobTrace, event: Event) -> None:
        """A complete span from one event: it ends at the event and lasts `event.duration`.

        The event's `span.id` names the span it happened in (a node's, or the job's), which
        becomes the parent and the new span gets an id of its own; an id that no span of this
        job has is taken as the span's own id, under the job.
        """
        fields = event.fields or {}
        trace_id = job.context.trace_id
        span_hex = fields.get("span.id")
        if span_hex in job.known_spans:
            own_id = int(new_span_id(), 16)
            parent = SpanContext(trace_id, int(span_hex, 16), False, _SAMPLED)
        else:
            own_id = int(span_hex, 16) if span_hex else int(new_span_id(), 16)
            parent = job.context
        if event.action is Action.MODEL_LOADED:
            model = fields.get("model.name")
            name = f"model load {model}" if model else "model load"
        else:
            name = "output upload"
        end = event.time_ns
        start = _start(None, end, fields.get("event.duration"))
        status = _UNSET
        events: list[SpanEvent] = []
        if fields.get("event.outcome") == "failure" or "error.type" in fields:
            status = Status(StatusCode.ERROR, fields.get("error.message") or f"{name} failed")
            events.append(_exception(fields, end, fields.get("error.stack_trace")))
        context = SpanContext(trace_id, own_id, False, _SAMPLED)
        self._emit(name, context, parent, start, end, fields, events, status)

    # -- building -----------------------------------------------------------------------
    def _emit_open(self, span: _OpenSpan, end_ns: int, status: Status) -> None:
        context, parent, fields = span.context, span.parent, span.fields
        self._emit(span.name, context, parent, span.start_ns, end_ns, fields, span.events, status)

    def _emit(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        fields: Mapping[str, Any],
        events: list[SpanEvent],
        status: Status,
        *,
        job: bool = False,
    ) -> None:
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=to_attributes(fields, _NOT_JOB_ATTRIBUTES if job else _NOT_ATTRIBUTES),
            events=events,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=_SCOPE,
        )
        self.spans_built += 1
        self.on_span(span)


_UNSET = Status(StatusCode.UNSET)


def _start(seen_ns: int | None, end_ns: int, duration_ns: Any) -> int:
    """A span starts at its start event, or earlier if the measured duration says so (a job
    is timed from before its signatures are computed, a node from its first call); never after
    its end. Event times are wall clock, durations a monotonic clock: both are trusted."""
    start = seen_ns if seen_ns is not None else end_ns
    if isinstance(duration_ns, int) and duration_ns > 0:
        start = min(start, end_ns - duration_ns)
    return min(start, end_ns)


def _job_name(fields: Mapping[str, Any]) -> str:
    label = fields.get("workflow.name") or fields.get("workflow.id") or fields.get("job.id")
    return f"job {label}" if label else "job"


def _exception(
    fields: Mapping[str, Any], time_ns: int, stack: str | None, *, failed_node: bool = False
) -> SpanEvent:
    """The OTel `exception` span event (semantic conventions: exception.type/message/...)."""
    attributes: dict[str, str] = {
        "exception.type": str(fields.get("error.type") or "unknown"),
        "exception.message": str(fields.get("error.message") or ""),
    }
    if stack:
        attributes["exception.stacktrace"] = stack
    if failed_node:
        for key in ("node.id", "node.type"):
            if fields.get(key) is not None:
                attributes[key] = str(fields[key])
    return SpanEvent("exception", attributes, time_ns)


def _span_event(event: Event) -> SpanEvent:
    fields = event.fields or {}
    attributes: dict[str, Any] = {"message": event.message}
    for key in ("error.message", "node.expanded_count"):
        if fields.get(key) is not None:
            attributes[key] = fields[key]
    return SpanEvent(event.action.value, attributes, event.time_ns)
