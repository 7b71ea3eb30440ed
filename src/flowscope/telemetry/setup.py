"""Assembling the telemetry of one process from options: which sinks, where, how bounded.

Used by the composition roots (`flowscope run`, later the server). The local log store lives in
its own package (the engine never needs it); it is imported only when it is switched on.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.events import Level
from flowscope.telemetry.metrics_http import MetricsHTTPServer
from flowscope.telemetry.pipeline import DebugSampler, Sink, TelemetryPipeline
from flowscope.telemetry.sinks.metrics import MetricsSink

DEFAULT_LOG_FILE = Path("logs") / "events.jsonl"  # under the base directory
DEFAULT_LOGSTORE = Path("logstore.db")
DEFAULT_FORWARD_SPOOL = Path("spool") / "forward"
# Fluent Bit matches `flowscope.*`, Fluentd `flowscope.**`: a two-part tag satisfies both.
DEFAULT_FORWARD_TAG = "flowscope.events"


@dataclass
class TelemetryOptions:
    """What to switch on. Paths are absolute (the CLI resolves them under the base directory)."""

    log_file: Path | None = None  # JSON lines, rotated by the process
    log_stdout: bool = False  # JSON lines on standard output too
    log_max_bytes: int = 100 * 1024 * 1024
    log_keep: int = 10
    console: bool = False  # the human-readable format on standard error
    console_level: Level = Level.INFO
    logstore: Path | None = None  # the local SQLite log store
    logstore_retention: timedelta | None = timedelta(days=30)
    metrics_port: int | None = None  # a /metrics endpoint on this port (0: any free port)
    metrics_host: str = "127.0.0.1"
    traces_endpoint: str | None = None  # OTLP/HTTP; OTEL_EXPORTER_OTLP_* also switch it on
    forward: tuple[str, int] | None = None  # Fluentd / Fluent Bit forward input
    forward_spool: Path | None = None
    forward_shared_key: str | None = None
    forward_tls: ssl.SSLContext | None = None
    forward_tag: str = DEFAULT_FORWARD_TAG
    debug_sample_rate: float = 1.0
    service: ServiceInfo = field(default_factory=ServiceInfo)


class Telemetry:
    """The running pipeline, the metrics (for /metrics) and the exposition server, if any."""

    def __init__(
        self, pipeline: TelemetryPipeline, metrics: MetricsSink, server: MetricsHTTPServer | None
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.metrics_server = server

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush every sink (the JSON-lines file and the log store are complete afterwards)."""
        self.pipeline.close(timeout_s)
        if self.metrics_server is not None:
            self.metrics_server.close()


def start_telemetry(bus: EventBus, options: TelemetryOptions) -> Telemetry:
    from flowscope.telemetry.sinks.deferred import DeferredSink

    service = options.service
    sinks: list[Sink] = []
    metrics = MetricsSink()
    # Metrics are updated on a background thread: a few µs per event, off the job's thread.
    sinks.append(DeferredSink(metrics))
    if options.log_file is not None or options.log_stdout:
        from flowscope.telemetry.sinks.jsonlines import JsonLinesSink

        sinks.append(
            JsonLinesSink(
                options.log_file,
                stdout=options.log_stdout,
                service=service,
                max_bytes=options.log_max_bytes,
                keep=options.log_keep,
            )
        )
    if options.console:
        from flowscope.telemetry.sinks.console import ConsoleSink

        sinks.append(ConsoleSink(min_level=options.console_level))
    if options.logstore is not None:
        from flowscope.logstore.sink import LogStoreSink

        sinks.append(
            LogStoreSink(options.logstore, service=service, retention=options.logstore_retention)
        )
    if options.traces_endpoint is not None or _otlp_configured():
        from flowscope.telemetry.sinks.traces import TraceSink

        # A large queue also means a long job is not interrupted by span building mid-way.
        sinks.append(TraceSink(endpoint=options.traces_endpoint, service=service, capacity=100_000))
    if options.forward is not None:
        from flowscope.telemetry.forward import ForwardSink

        host, port = options.forward
        spool = options.forward_spool or Path.cwd() / DEFAULT_FORWARD_SPOOL
        sinks.append(
            ForwardSink(
                host,
                port,
                spool_dir=spool,
                tag=options.forward_tag,
                shared_key=options.forward_shared_key,
                tls=options.forward_tls,
                service=service,
            )
        )
    pipeline = TelemetryPipeline(bus, sinks, sampler=DebugSampler(options.debug_sample_rate))
    server = None
    if options.metrics_port is not None:
        server = MetricsHTTPServer(metrics, host=options.metrics_host, port=options.metrics_port)
        server.start()
    return Telemetry(pipeline, metrics, server)


def _otlp_configured() -> bool:
    return any(
        os.environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
