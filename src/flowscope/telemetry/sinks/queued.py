"""The base of every sink that does I/O: a bounded queue filled by the emitting thread and
drained in batches by the sink's own thread. Offering never blocks: when the queue is full the
event is dropped and counted; a batch the sink fails to write is dropped and counted too."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from flowscope.telemetry.events import Event


class QueuedSink:
    """Subclasses implement `write_batch`; they may override `flush` and `close_output`."""

    def __init__(
        self,
        name: str,
        *,
        capacity: int = 100_000,
        batch_size: int = 1_000,
        flush_interval_s: float = 0.2,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dropped = 0  # events lost: refused when full, or in a batch that failed to write
        self.written = 0
        self.last_error: str | None = None
        self._queue: deque[Event] = deque()
        self._busy = False
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(
            target=self._drain, name=f"flowscope-sink-{name}", daemon=True
        )
        self._started = False
        self._start_lock = threading.Lock()

    # -- emitting thread ----------------------------------------------------------------
    def offer(self, event: Event) -> bool:
        """Enqueue without blocking; False (and counted) when the queue is full or closed."""
        if self._closing or len(self._queue) >= self.capacity:
            self.dropped += 1
            return False
        self._queue.append(event)
        if not self._started:
            self._start()
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    def _start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    # -- the sink's thread --------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._write_pending()
            if self._closing and not self._queue:
                return

    def _write_pending(self) -> None:
        self._busy = True
        try:
            self._write_queued()
        finally:
            self._busy = False

    def _write_queued(self) -> None:
        while self._queue:
            batch: list[Event] = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            try:
                self.write_batch(batch)
                self.written += len(batch)
            except Exception as exc:  # a failing sink loses this batch, never the job
                self.dropped += len(batch)
                self.last_error = f"{type(exc).__name__}: {exc}"
        try:
            self.flush()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"

    def write_batch(self, events: Sequence[Event]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Called after each drained run of batches (e.g. to fsync or commit)."""

    def close_output(self) -> None:
        """Release files and connections; called once, after the last batch."""

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until everything offered so far is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._busy) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)
        return not (self._queue or self._busy)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to `timeout_s`), then release the output."""
        self._closing = True
        if self._started:
            self._wake.set()
            self._thread.join(timeout_s)
        else:
            self._write_pending()
        self.close_output()
