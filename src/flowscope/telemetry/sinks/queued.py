"""The base of every sink that does I/O: a bounded queue filled by the emitting thread and
drained in batches by the sink's own thread. Offering never blocks: when the queue is full the
event is dropped and counted; a batch the sink fails to write is dropped and counted too."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from flowscope.telemetry.events import Event


class QueuedSink:
    """Subclasses implement `write_batch`; they may override `flush` and `close_output`."""

    def __init__(
        self,
        name: str,
        *,
        capacity: int = 100_000,
        batch_size: int = 1_000,
        flush_interval_s: float = 0.05,
        wake_at: int | None = None,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        # The writer writes flush_interval_s after the first event of a burst arrives, or early
        # once `wake_at` events wait. The default (a tenth of the queue) lets a burst, such as
        # a job of many fast nodes, be written just after it instead of taking the GIL from it
        # while it runs.
        self.wake_at = wake_at if wake_at is not None else max(batch_size, capacity // 10)
        self.dropped = 0  # events lost: refused when full, or in a batch that failed to write
        self.written = 0
        self.last_error: str | None = None
        self._queue: deque[Event] = deque()
        self._busy = False
        self._wake = threading.Event()  # write now: wake_at reached, wait_idle or close
        self._arrived = threading.Event()  # the queue was empty and is not: start the clock
        self._closing = False
        self._output_closed = False
        self._thread = threading.Thread(
            target=self._drain, name=f"flowscope-sink-{name}", daemon=True
        )
        self._started = False
        self._start_lock = threading.Lock()
        self._hand_over: Callable[[], None] | None = None

    # -- emitting thread ----------------------------------------------------------------
    def offer(self, event: Event) -> bool:
        """Enqueue without blocking; False (and counted) when the queue is full or closed."""
        if self._closing or len(self._queue) >= self.capacity:
            self.dropped += 1
            return False
        queue = self._queue
        queue.append(event)
        if not self._started:
            self._start()
        # Event.set() takes a lock, so it is called only when it changes something.
        size = len(queue)
        if size >= self.wake_at:
            if not self._wake.is_set():
                self._wake.set()
                self._arrived.set()  # in case the thread is still waiting for a first event
        elif size == 1 and not self._arrived.is_set():
            self._arrived.set()
        return True

    def accept(self, events: Sequence[Event]) -> None:
        """`offer` for a batch (the pipeline's fan-out hands a burst over in one go): what
        fits in the queue is taken, the rest is dropped and counted."""
        if self._closing:
            self.dropped += len(events)
            return
        room = self.capacity - len(self._queue)
        if room < len(events):
            self.dropped += len(events) - max(room, 0)
            events = events[: max(room, 0)]
        if not events:
            return
        self._queue.extend(events)
        if not self._started:
            self._start()
        if len(self._queue) >= self.wake_at:
            self._wake.set()
        self._arrived.set()

    def attach_feeder(self, hand_over: Callable[[], None]) -> None:
        """Called by whoever feeds this sink through `accept` (the pipeline's fan-out):
        `hand_over()` gives it what is still held upstream, so `wait_idle` covers that too."""
        self._hand_over = hand_over

    def _start(self) -> None:
        with self._start_lock:
            if not self._started:
                self._started = True
                self._thread.start()

    # -- the sink's thread --------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            # Idle until a burst's first event arrives, then give the burst flush_interval_s
            # to end (or until wake_at, wait_idle or close). The timeout on `_arrived` bounds
            # the wait should two emitting threads both miss the queue going from empty to
            # one event, and runs `flush` now and then while idle.
            self._arrived.wait(self.flush_interval_s)
            self._arrived.clear()
            if self._queue and not self._wake.is_set():
                self._wake.wait(self.flush_interval_s)
            # Cleared before writing: a signal that comes during the write is for the next
            # round, and none is left over to start a burst's clock early.
            self._wake.clear()
            self._write_pending()
            if self._queue:
                self._arrived.set()  # arrived while writing: their burst has begun
            if self._closing and not self._queue:
                self._close_output_once()
                return

    def _write_pending(self) -> None:
        self._busy = True
        try:
            self._write_queued()
        finally:
            self._busy = False

    def _write_queued(self) -> None:
        queue = self._queue
        while queue:
            popleft = queue.popleft
            batch = [popleft() for _ in range(min(len(queue), self.batch_size))]
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
        """Release files and connections; called once, after the last batch, on the thread that
        wrote it (never while a batch is being written)."""

    def _close_output_once(self) -> None:
        if self._output_closed:
            return
        self._output_closed = True
        try:
            self.close_output()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until everything offered so far is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        if self._hand_over is not None:
            self._hand_over()
        while (self._queue or self._busy) and time.monotonic() < deadline:
            self._wake.set()
            self._arrived.set()
            time.sleep(0.005)
        return not (self._queue or self._busy)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to `timeout_s`), then release the output."""
        if self._hand_over is not None:
            self._hand_over()
        self._closing = True
        if self._started:
            self._wake.set()
            self._arrived.set()
            # The sink's thread closes the output after its last batch. If it is still writing
            # when the timeout expires, it finishes in the background: closing the output from
            # here would pull the file or connection out from under a write in progress.
            self._thread.join(timeout_s)
        else:
            self._write_pending()
            self._close_output_once()
