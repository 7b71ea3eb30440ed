"""A real OTLP/HTTP trace receiver for tests: an `http.server` on 127.0.0.1 (a free port) that
decodes each POST /v1/traces body as the protobuf `ExportTraceServiceRequest` the collector
would receive, and keeps the spans. No collector can run here; this speaks the same wire format
(OTLP/HTTP binary protobuf, optionally gzip) and answers as the spec says.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass
class ReceivedSpan:
    span: Span
    resource: dict[str, Any]
    scope: str

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def attributes(self) -> dict[str, Any]:
        return {kv.key: any_value(kv.value) for kv in self.span.attributes}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            {kv.key: any_value(kv.value) for kv in e.attributes}
            for e in self.span.events
            if e.name == name
        ]


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


class OtlpReceiver:
    """Use as a context manager; `endpoint` is the base URL to give the exporter."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.hold = threading.Event()  # clear it to make every request wait (a slow collector)
        self.hold.set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.hold.wait(30)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_error(415, "OTLP/HTTP binary protobuf expected")
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver._changed:
                    receiver.requests.append(request)
                    receiver.paths.append(self.path)
                    receiver._changed.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        return list(_spans(requests))

    def wait_for_spans(self, count: int, timeout_s: float = 5.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while sum(_count(r) for r in self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
        return self.spans()


def _count(request: ExportTraceServiceRequest) -> int:
    return sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)


def _spans(requests: list[ExportTraceServiceRequest]) -> Iterator[ReceivedSpan]:
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    yield ReceivedSpan(span, resource, scope_spans.scope.name)
