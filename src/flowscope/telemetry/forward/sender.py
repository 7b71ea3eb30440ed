"""Delivery of spooled chunks, at least once: one thread owns the connection, sends the oldest
chunks (a few in flight on one keepalive connection), deletes each from the spool when its ack
arrives, and on a closed connection, an error or an ack timeout reconnects with backoff and
sends every unacked chunk again, byte for byte.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flowscope.telemetry.forward.connection import ForwardClosedError, ForwardConnection
from flowscope.telemetry.forward.protocol import ForwardError
from flowscope.telemetry.forward.spool import Spool, SpooledChunk


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between connection attempts, with jitter so that many workers that
    lost the same server do not reconnect in step."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, failures: int) -> float:
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        return base * (0.5 + random.random() / 2)


@dataclass(slots=True)
class _InFlight:
    chunk: SpooledChunk
    deadline: float


class ForwardSender:
    """Ships what the spool holds, oldest first, and keeps at it until `close()`.

    `connect(timeout_s)` opens an authenticated connection (ForwardConnection.open).
    """

    def __init__(
        self,
        spool: Spool,
        connect: Callable[[float], ForwardConnection],
        *,
        connect_timeout_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
        on_error: Callable[[str], None] | None = None,
        name: str = "forward",
    ) -> None:
        if ack_timeout_s <= 0 or max_in_flight < 1:
            raise ValueError("ack_timeout_s must be positive and max_in_flight at least 1")
        self.spool = spool
        self.connect_timeout_s = connect_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.retry = retry or RetryPolicy()
        self.max_in_flight = max_in_flight
        self.acked_chunks = 0
        self.acked_events = 0
        self.resent_chunks = 0  # sends of a chunk that had been sent before: possible duplicates
        self.connections = 0
        self.last_error: str | None = None
        self._connect = connect
        self._on_error = on_error
        self._conn: ForwardConnection | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._sent_before: set[str] = set()
        self._failures = 0
        self._next_attempt = 0.0
        self._stop_at: float | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(
            target=self._run, name=f"flowscope-sender-{name}", daemon=True
        )

    # -- other threads ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """New chunks are in the spool (called by the sink's thread)."""
        # BlockingIOError: a wake-up is already pending; OSError: the sender has stopped.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def wait_delivered(self, timeout_s: float = 5.0) -> bool:
        """Block until the spool is empty (everything acked), up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.005)
        return not len(self.spool)

    def close(self, timeout_s: float = 5.0) -> None:
        """Keep delivering for up to `timeout_s`, then stop; unacked chunks stay spooled."""
        self._stop_at = time.monotonic() + max(0.0, timeout_s)
        self.notify()
        if self._thread.ident is None:
            self._release()
        else:
            # A connect attempt in progress can outlast the deadline by its own timeout.
            self._thread.join(timeout_s + 1.0)

    # -- the sender's thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._done():
                try:
                    self._step()
                except Exception as exc:  # the delivery thread must not die: chunks stay spooled
                    self._fail(f"unexpected {type(exc).__name__}: {exc}")
        finally:
            self._release()

    def _release(self) -> None:
        self._disconnect()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _done(self) -> bool:
        if self._stop_at is None:
            return False
        return not len(self.spool) or time.monotonic() >= self._stop_at

    def _step(self) -> None:
        now = time.monotonic()
        if not len(self.spool):
            self._in_flight.clear()  # what was in flight got dropped by the size bound
            self._wait(None)  # still watch the connection: an idle server may close it
            return
        if self._conn is None:
            if now < self._next_attempt:
                self._wait(self._next_attempt - now)
                return
            if not self._open():
                return
        self._send_window()
        if self._conn is not None:
            self._wait(self._next_ack_deadline() - time.monotonic())
        self._expire_acks()

    def _open(self) -> bool:
        timeout_s = self.connect_timeout_s
        if self._stop_at is not None:  # closing: do not outlast the deadline by much
            timeout_s = min(timeout_s, max(0.05, self._stop_at - time.monotonic()))
        try:
            self._conn = self._connect(timeout_s)
        except (ForwardError, OSError) as exc:
            self._fail(str(exc))
            return False
        self.connections += 1
        self._selector.register(self._conn, selectors.EVENT_READ)
        return True

    def _send_window(self) -> None:
        conn = self._conn
        assert conn is not None
        # Without keepalive the server closes after one request: one chunk per connection.
        window = self.max_in_flight if conn.keepalive else 1 - conn.requests_sent
        if len(self._in_flight) >= window:
            return
        for chunk in self.spool.pending():
            if len(self._in_flight) >= window:
                break
            if chunk.chunk_id in self._in_flight:
                continue
            frame = self.spool.read(chunk)
            if frame is None:
                continue  # dropped by the size bound or acked since we listed it
            try:
                conn.send(frame)
            except ForwardError as exc:
                self._fail(f"{exc}; will resend after reconnecting")
                return
            if chunk.chunk_id in self._sent_before:
                self.resent_chunks += 1
            self._sent_before.add(chunk.chunk_id)
            self._in_flight[chunk.chunk_id] = _InFlight(
                chunk, time.monotonic() + self.ack_timeout_s
            )
        self._forget_dropped()

    def _wait(self, timeout_s: float | None) -> None:
        """Sleep until woken, the connection has something to read, or `timeout_s` passes."""
        if self._stop_at is not None:
            until_stop = self._stop_at - time.monotonic()
            timeout_s = until_stop if timeout_s is None else min(timeout_s, until_stop)
        if self._conn is not None and self._conn.has_buffered():
            timeout_s = 0.0
        readable = False
        for key, _ in self._selector.select(None if timeout_s is None else max(0.0, timeout_s)):
            if key.fileobj is self._wake_r:
                self._drain_wakeups()
            else:
                readable = True
        if self._conn is not None and (readable or self._conn.has_buffered()):
            self._read_acks()

    def _read_acks(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            acks = conn.read_acks()
        except ForwardClosedError as exc:
            if self._in_flight:
                self._fail(f"connection lost with chunks unacked ({exc}); will resend them")
            else:
                self._disconnect()  # an idle keepalive connection closed by the server: fine
            return
        except (ForwardError, OSError) as exc:
            self._fail(str(exc) or type(exc).__name__)
            return
        for chunk_id in acks:
            in_flight = self._in_flight.pop(chunk_id, None)
            if in_flight is None:
                continue  # an ack for a chunk we already gave up on: harmless
            self._sent_before.discard(chunk_id)
            # Counted before the removal: an empty spool means every count is in.
            self.acked_chunks += 1
            self.acked_events += in_flight.chunk.events
            self._failures = 0
            self.spool.remove(chunk_id)
        if not conn.keepalive and not self._in_flight:
            self._disconnect()

    def _next_ack_deadline(self) -> float:
        if not self._in_flight:
            return time.monotonic() + self.ack_timeout_s
        return min(entry.deadline for entry in self._in_flight.values())

    def _expire_acks(self) -> None:
        now = time.monotonic()
        late = [entry for entry in self._in_flight.values() if entry.deadline <= now]
        if late:
            # A server that stopped acking may have stopped reading too: start over on a new
            # connection and send everything unacked again (at least once, maybe twice).
            self._fail(
                f"no ack for chunk {late[0].chunk.chunk_id} within {self.ack_timeout_s:g}s; "
                "reconnecting to send unacked chunks again"
            )

    def _fail(self, message: str) -> None:
        self.last_error = message
        if self._on_error is not None:
            self._on_error(message)
        self._disconnect()
        self._failures += 1
        self._next_attempt = time.monotonic() + self.retry.delay(self._failures)

    def _disconnect(self) -> None:
        self._in_flight.clear()
        if self._conn is not None:
            self._selector.unregister(self._conn)
            self._conn.close()
            self._conn = None

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError once drained
            while self._wake_r.recv(4096):
                pass

    def _forget_dropped(self) -> None:
        # Ids of chunks the size bound dropped would pile up in `_sent_before`; prune now and
        # then, keeping the ids that are still spooled.
        if len(self._sent_before) > 2 * self.max_in_flight + len(self.spool) + 64:
            spooled = {chunk.chunk_id for chunk in self.spool.pending()}
            self._sent_before &= spooled
