"""The OpenTelemetry traces sink (spec §7): spans built from the events, exported over OTLP.

Spans carry exactly the ids the events carry (`trace.id`, `transaction.id` for the job span,
`span.id` for node spans; see `_otel_spans`), so a trace and the job's log lines always agree.
The emitting thread only enqueues; spans are built on the sink's thread and exported by the
SDK's BatchSpanProcessor over OTLP/HTTP protobuf.

Loss is bounded and counted, never silent: the SDK's span queue is memory-only (2048 spans by
default, dropped when full, lost if the process dies), so `dropped` counts the events this sink
could not take, plus every span refused because that queue was full, in a batch the collector
did not accept (after the exporter's retries), or still queued at shutdown. The telemetry
pipeline reports `dropped` as `telemetry.dropped` events. Export failures never reach the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter

from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.events import Event
from flowscope.telemetry.sinks._otel_attributes import resource_for
from flowscope.telemetry.sinks._otel_delivery import (
    SpanDelivery,
    max_queue_from_env,
    otlp_exporter,
    traces_endpoint,
)
from flowscope.telemetry.sinks._otel_spans import TRACED_ACTIONS, TraceAssembler
from flowscope.telemetry.sinks.queued import QueuedSink

_EVICT_CHECK_S = 1.0


class TraceSink(QueuedSink):
    """Builds a job's spans from its events and exports them.

    `endpoint`: the OTLP/HTTP base URL (`http://collector:4318`; `/v1/traces` is appended);
    without it OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT are read, and
    with none of them spans are built but not exported (no network use at all). `exporter`
    replaces the OTLP exporter (another protocol, or a test). `headers` and `timeout_s` go to
    the OTLP exporter (both default to the OTEL_EXPORTER_OTLP_* variables). `max_queue` is the
    SDK's span queue (default OTEL_BSP_MAX_QUEUE_SIZE or 2048), `export_interval_s` its
    schedule delay (default OTEL_BSP_SCHEDULE_DELAY or 5 s). `capacity` bounds the events
    waiting to be turned into spans. A job that sends no event for `job_idle_timeout_s`, or the
    oldest when `max_jobs` are open, is closed with what is known (`job.incomplete=true`);
    progress events do not count as activity (they are not queued), so keep the timeout above
    the longest node.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        service: ServiceInfo | None = None,
        headers: Mapping[str, str] | None = None,
        exporter: SpanExporter | None = None,
        timeout_s: float | None = None,
        max_queue: int | None = None,
        export_interval_s: float | None = None,
        capacity: int = 10_000,
        max_jobs: int = 1_000,
        job_idle_timeout_s: float = 6 * 3_600.0,
        name: str = "traces",
    ) -> None:
        super().__init__(name, capacity=capacity, batch_size=500)
        self.service = service or ServiceInfo()
        self.endpoint = traces_endpoint(endpoint) if exporter is None else None
        if exporter is None and self.endpoint is not None:
            exporter = otlp_exporter(self.endpoint, headers, timeout_s)
        self._delivery: SpanDelivery | None = None
        if exporter is not None:
            self._delivery = SpanDelivery(
                exporter,
                max_queue=max_queue if max_queue is not None else max_queue_from_env(),
                export_interval_s=export_interval_s,
            )
        self._assembler = TraceAssembler(
            resource_for(self.service),
            self._span_finished,
            max_jobs=max_jobs,
            idle_timeout_s=job_idle_timeout_s,
        )
        self._lock = threading.Lock()  # the assembler's state, should close() race the thread
        self._folded = 0  # delivery losses already added to `dropped`
        self._next_evict_check = 0.0
        self._close_timeout_s = 5.0

    @property
    def exporting(self) -> bool:
        """Whether spans leave the process (an endpoint or an exporter was given)."""
        return self._delivery is not None

    @property
    def spans_built(self) -> int:
        return self._assembler.spans_built

    @property
    def spans_exported(self) -> int:
        return self._delivery.exported if self._delivery is not None else 0

    @property
    def spans_lost(self) -> int:
        return self._delivery.lost if self._delivery is not None else 0

    @property
    def open_jobs(self) -> int:
        return self._assembler.open_jobs

    @property
    def export_error(self) -> str | None:
        """The last export failure, for status pages and tests."""
        return self._delivery.last_error if self._delivery is not None else None

    # -- emitting thread ----------------------------------------------------------------
    def offer(self, event: Event) -> bool:
        if event.action not in TRACED_ACTIONS:
            return True  # not part of any span: nothing to queue
        return super().offer(event)

    def accept(self, events: Sequence[Event]) -> None:
        super().accept([event for event in events if event.action in TRACED_ACTIONS])

    # -- the sink's thread --------------------------------------------------------------
    def write_batch(self, events: Sequence[Event]) -> None:
        with self._lock:
            for event in events:
                try:
                    self._assembler.add(event)
                except Exception as exc:  # a malformed event loses itself, not the batch
                    self.dropped += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"

    def flush(self) -> None:
        now = time.monotonic()
        if now >= self._next_evict_check:
            self._next_evict_check = now + _EVICT_CHECK_S
            with self._lock:
                self._assembler.evict_idle()
        self._fold_losses()

    def _span_finished(self, span: ReadableSpan) -> None:
        if self._delivery is not None:
            self._delivery.submit(span)

    def _fold_losses(self) -> None:
        """Add the spans lost since the last call to `dropped`, the one counter the pipeline
        reads (the exporter's thread only counts them in the delivery)."""
        if self._delivery is None:
            return
        with self._lock:
            lost = self._delivery.lost
            if lost > self._folded:
                self.dropped += lost - self._folded
                self._folded = lost
                self.last_error = self._delivery.last_error or self.last_error

    # -- lifecycle ----------------------------------------------------------------------
    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Turn every event offered so far into spans and export them; True if all were
        handled in time (whether the collector accepted them shows in `dropped`)."""
        idle = self.wait_idle(timeout_s)
        if self._delivery is not None:
            self._delivery.force_flush()
        self._fold_losses()
        return idle

    def close_output(self) -> None:
        # Jobs still running at shutdown are closed as incomplete: what was running still shows.
        with self._lock:
            self._assembler.close_all()
        if self._delivery is not None:
            self._delivery.shutdown(self._close_timeout_s)
        self._fold_losses()

    def close(self, timeout_s: float = 5.0) -> None:
        self._close_timeout_s = timeout_s  # close_output() takes no arguments
        super().close(timeout_s)
