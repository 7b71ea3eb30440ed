"""A standalone /metrics endpoint for processes without the HTTP server (`--metrics-port`).

It serves a MetricsSink's exposition on a thread of its own, choosing the format from the Accept
header as Prometheus expects: OpenMetrics (which carries the trace-id exemplars) when the scraper
prefers it, the classic text format otherwise (curl, browsers). The server mounts the same
`wants_openmetrics` + `MetricsSink.render` pair on its own /metrics route.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

METRICS_PATH = "/metrics"
OPENMETRICS_MEDIA_TYPE = "application/openmetrics-text"


class Exposition(Protocol):
    def render(self, openmetrics: bool) -> tuple[bytes, str]: ...


def wants_openmetrics(accept: str | None) -> bool:
    """True when the Accept header ranks OpenMetrics at least as high as any other type it
    accepts (Prometheus: `application/openmetrics-text;version=1.0.0,...,text/plain;q=0.5`)."""
    if not accept:
        return False
    best_openmetrics = 0.0
    best_other = 0.0
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type.lower() == OPENMETRICS_MEDIA_TYPE:
            best_openmetrics = max(best_openmetrics, quality)
        elif media_type:
            best_other = max(best_other, quality)
    return best_openmetrics > 0 and best_openmetrics >= best_other


class MetricsHTTPServer:
    """Listens on `host:port` at construction (port 0 picks a free one; see `.port`) and serves
    GET /metrics from `start()` until `close()`. Binds to loopback unless told otherwise: expose
    metrics to the network deliberately (`host="0.0.0.0"`)."""

    def __init__(self, exposition: Exposition, *, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = _handler_for(exposition)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot serve metrics on {host}:{port}: {exc.strerror}; "
                "choose a free port with --metrics-port",
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flowscope-metrics-http", daemon=True
        )

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{METRICS_PATH}"

    def start(self) -> MetricsHTTPServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> MetricsHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _handler_for(exposition: Exposition) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self._send(404, b"not found: metrics are served at /metrics\n", "text/plain")
                return
            body, content_type = exposition.render(wants_openmetrics(self.headers.get("Accept")))
            self._send(200, body, content_type)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds would flood stderr; the scraper records failures."""

    return MetricsHandler
