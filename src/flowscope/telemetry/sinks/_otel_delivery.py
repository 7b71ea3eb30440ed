"""Delivering finished spans: the SDK's BatchSpanProcessor in front of an exporter (OTLP/HTTP
protobuf by default), with every span that does not arrive counted.

The processor's queue is memory-only (OTEL_BSP_MAX_QUEUE_SIZE, 2048 spans by default): spans
still queued when the process dies are lost, and a full queue drops spans with only a log line.
So spans are admitted only while fewer than `max_queue` are queued or being exported (the
processor then never overflows) and the rest are refused here and counted; a batch the exporter
fails to deliver (after its own retries, within OTEL_EXPORTER_OTLP_TRACES_TIMEOUT) is counted
too, as is whatever is still undelivered when `shutdown` gives up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

DEFAULT_MAX_QUEUE = 2048  # the SDK's default (OTel spec: maxQueueSize)
_MAX_EXPORT_BATCH = 512  # the SDK's default batch size
_TRACES_PATH = "/v1/traces"


def traces_endpoint(endpoint: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP URL spans are posted to, or None when nothing is configured.

    `endpoint` is read like OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: `/v1/traces` is appended
    unless the URL already ends with it); without it, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used
    as is, and then OTEL_EXPORTER_OTLP_ENDPOINT as a base URL, as the OTel spec says.
    """
    if endpoint:
        return _with_traces_path(endpoint)
    if signal := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return signal
    if base := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return _with_traces_path(base)
    return None


def _with_traces_path(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(
            f"OTLP endpoint {url!r} is not a URL; give one like http://localhost:4318 "
            "(OTLP/HTTP, protobuf)"
        )
    if parts.path.rstrip("/").endswith(_TRACES_PATH):
        return url
    return url.rstrip("/") + _TRACES_PATH


def otlp_exporter(
    url: str, headers: Mapping[str, str] | None = None, timeout_s: float | None = None
) -> SpanExporter:
    """The official OTLP/HTTP protobuf exporter; headers, TLS files, compression and timeout
    not given here still come from the standard OTEL_EXPORTER_OTLP_* variables."""
    return OTLPSpanExporter(endpoint=url, headers=headers, timeout=timeout_s)


def max_queue_from_env(environ: Mapping[str, str] = os.environ) -> int:
    value = environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "").strip()
    if not value:
        return DEFAULT_MAX_QUEUE
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"OTEL_BSP_MAX_QUEUE_SIZE must be a positive integer, got {value!r}")
    return size


class _CountingExporter(SpanExporter):
    """Reports each batch's fate to `done(count, delivered)`; never lets an exception out."""

    def __init__(self, inner: SpanExporter, done: Callable[[int, bool], None]) -> None:
        self.inner = inner
        self.done = done
        self.last_error: str | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # the processor would only log it; we also count it
            self.last_error = f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS and self.last_error is None:
            self.last_error = "the exporter reported a failed export"
        self.done(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SpanDelivery:
    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        export_interval_s: float | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1 span, got {max_queue}")
        self.max_queue = max_queue
        self.exported = 0
        self.failed = 0  # spans in batches the exporter could not deliver
        self.refused = 0  # spans not admitted: max_queue were already waiting
        self.abandoned = 0  # spans still undelivered when shutdown gave up
        self._in_flight = 0  # admitted, not yet exported or failed
        self._accepting = True
        self._closed = False
        self._lock = threading.Lock()
        self._exporter = _CountingExporter(exporter, self._done)
        self._processor = BatchSpanProcessor(
            self._exporter,
            max_queue_size=max_queue,
            schedule_delay_millis=None if export_interval_s is None else export_interval_s * 1e3,
            max_export_batch_size=min(_MAX_EXPORT_BATCH, max_queue),
        )

    @property
    def lost(self) -> int:
        return self.failed + self.refused + self.abandoned

    @property
    def pending(self) -> int:
        return self._in_flight

    @property
    def last_error(self) -> str | None:
        return self._exporter.last_error

    def submit(self, span: ReadableSpan) -> bool:
        with self._lock:
            if not self._accepting or self._in_flight >= self.max_queue:
                self.refused += 1
                return False
            self._in_flight += 1
        self._processor.on_end(span)
        return True

    def _done(self, count: int, delivered: bool) -> None:
        with self._lock:
            if self._closed:
                return  # already counted as abandoned
            self._in_flight -= count
            if delivered:
                self.exported += count
            else:
                self.failed += count

    def force_flush(self) -> None:
        """Export everything admitted so far, on this thread (tests, shutdown)."""
        self._processor.force_flush()

    def shutdown(self, timeout_s: float) -> None:
        """Export what is queued, for up to `timeout_s`, then stop; the rest is abandoned."""
        with self._lock:
            self._accepting = False
        # The processor's own shutdown waits up to 30 s per step: bound it from outside.
        stopper = threading.Thread(
            target=self._processor.shutdown, name="flowscope-traces-shutdown", daemon=True
        )
        stopper.start()
        stopper.join(timeout_s)
        with self._lock:
            self._closed = True
            self.abandoned += self._in_flight
            self._in_flight = 0
