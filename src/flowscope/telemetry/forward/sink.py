"""The Fluentd / Fluent Bit sink: ECS documents in PackedForward chunks (gzip by default),
spooled to disk, shipped at least once over TCP or TLS, with the shared-key handshake when the
server has `<security>` (spec/telemetry.md §8).

The emitting thread only enqueues (QueuedSink). The sink's thread batches by size and time,
encodes each batch as one chunk and writes it to the spool; the sender's thread delivers spooled
chunks and deletes them on ack. Chunks dropped by the spool's size bound count in `dropped`, so
the pipeline reports them as `telemetry.dropped`.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence

from flowscope.telemetry.document import DocumentBuilder, ServiceInfo
from flowscope.telemetry.events import Event
from flowscope.telemetry.forward.connection import Endpoint, ForwardConnection
from flowscope.telemetry.forward.handshake import SharedKeyAuth
from flowscope.telemetry.forward.protocol import encode_chunk, new_packer
from flowscope.telemetry.forward.sender import ForwardSender, RetryPolicy
from flowscope.telemetry.forward.spool import Spool
from flowscope.telemetry.sinks.queued import QueuedSink

DEFAULT_PORT = 24224
DEFAULT_MAX_SPOOL_BYTES = 256 * 1024 * 1024
_RELEASE_GRACE_S = 2.0


class ForwardSink(QueuedSink):
    """Ships events to `host:port` over the Forward protocol, at least once.

    `tls` wraps the stream in TLS (e.g. `ssl.create_default_context(cafile=...)`);
    `shared_key` (plus `username`/`password` for user auth) answers the server's HELO;
    `spool_dir` holds unacked chunks across outages and restarts, up to `max_spool_bytes`.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        spool_dir: str | os.PathLike[str],
        tag: str = "flowscope",
        shared_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        self_hostname: str | None = None,
        tls: ssl.SSLContext | None = None,
        tls_server_hostname: str | None = None,
        compress: bool = True,
        compress_level: int = 6,
        batch_size: int = 1_000,
        flush_interval_s: float = 1.0,
        capacity: int = 100_000,
        ack_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        fsync: bool = True,
        service: ServiceInfo | None = None,
        name: str = "forward",
    ) -> None:
        if not tag:
            raise ValueError("ForwardSink: tag must not be empty (Fluentd routes on it)")
        if shared_key is None and username is not None:
            raise ValueError("ForwardSink: username/password need a shared_key (spec §8)")
        super().__init__(
            name, capacity=capacity, batch_size=batch_size, flush_interval_s=flush_interval_s
        )
        self.tag = tag
        self.compress = compress
        if not 1 <= compress_level <= 9:
            raise ValueError(f"ForwardSink: compress_level must be 1..9, got {compress_level}")
        self.compress_level = compress_level
        self.endpoint = Endpoint(host, port, tls, tls_server_hostname)
        auth = None
        if shared_key is not None:
            auth = SharedKeyAuth(
                shared_key, self_hostname or socket.gethostname(), username, password
            )
        self._documents = DocumentBuilder(service)
        self._packer = new_packer()  # used by the sink's thread only
        self.spool = Spool(spool_dir, max_spool_bytes, fsync=fsync)
        self._dropped_by_spool = self.spool.dropped_events  # chunks the bound cut at start-up
        self.dropped += self._dropped_by_spool
        self.sender = ForwardSender(
            self.spool,
            functools.partial(ForwardConnection.open, self.endpoint, auth),
            connect_timeout_s=connect_timeout_s,
            ack_timeout_s=ack_timeout_s,
            retry=retry,
            max_in_flight=max_in_flight,
            on_error=self._record_error,
            name=name,
        )
        self._close_deadline: float | None = None
        self._released = threading.Event()
        # Started now, not on the first event: chunks left by a previous run go out at once.
        self.sender.start()

    # -- the sink's thread ----------------------------------------------------------------
    def write_batch(self, events: Sequence[Event]) -> None:
        build = self._documents
        chunk = encode_chunk(
            self.tag,
            [(event.time_ns, build(event)) for event in events],
            compress=self.compress,
            compress_level=self.compress_level,
            packer=self._packer,
        )
        self.spool.add(chunk)
        self._count_spool_drops()
        self.sender.notify()

    def flush(self) -> None:
        # Runs every flush interval: picks up chunks the sender found deleted from the spool.
        self._count_spool_drops()

    def _count_spool_drops(self) -> None:
        total = self.spool.dropped_events
        if total > self._dropped_by_spool:
            self.dropped += total - self._dropped_by_spool
            self._dropped_by_spool = total

    def _record_error(self, message: str) -> None:
        self.last_error = f"forward {self.endpoint}: {message}"

    # -- state ----------------------------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Events the server acked (in this process)."""
        return self.sender.acked_events

    @property
    def spooled_events(self) -> int:
        """Events written to the spool and not acked yet."""
        return self.spool.pending_events

    def wait_delivered(self, timeout_s: float = 5.0) -> bool:
        """Block until everything offered so far is acked by the server (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        if not self.wait_idle(timeout_s):
            return False
        return self.sender.wait_delivered(max(0.0, deadline - time.monotonic()))

    # -- lifecycle ------------------------------------------------------------------------
    def close(self, timeout_s: float = 5.0) -> None:
        """Spool what is queued, keep delivering until `timeout_s` has passed, then stop;
        what is still unacked stays in the spool for the next start."""
        self._close_deadline = time.monotonic() + timeout_s
        super().close(timeout_s)
        # The sink's thread stops the sender and releases the spool after its last batch; that
        # takes a moment past the deadline, and a new sink on this spool_dir needs it done.
        self._released.wait(_RELEASE_GRACE_S)

    def close_output(self) -> None:
        remaining = 0.0
        if self._close_deadline is not None:
            remaining = max(0.0, self._close_deadline - time.monotonic())
        try:
            self.sender.close(remaining)
            self.spool.close()
        finally:
            self._released.set()
