"""The fan-out: how the pipeline gets events to its queued sinks without costing the emitter.

The emitting thread appends each event once, to one bounded queue. One thread hands a burst's
events to every queued sink in one batch (`QueuedSink.accept`), a window after the burst's
first event: so a job's thread pays one append per event, not one offer per sink, and while a
burst is being emitted only this thread wakes (once), not every sink's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from flowscope.telemetry.events import Event
from flowscope.telemetry.sinks.queued import QueuedSink


class FanOut:
    """Feeds `sinks`. Holds at most the largest sink capacity; an event that finds it full is
    dropped for every sink, and counted in each one's `dropped`. The window is the shortest
    sink's `flush_interval_s`, cut short once the largest `wake_at` events wait."""

    def __init__(self, sinks: Sequence[QueuedSink]) -> None:
        self.sinks = list(sinks)
        self.capacity = max(sink.capacity for sink in self.sinks)
        self.window_s = min(sink.flush_interval_s for sink in self.sinks)
        self.wake_at = max(sink.wake_at for sink in self.sinks)
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()  # one hand-over at a time: each sink sees events in order
        self._arrived = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flowscope-fanout", daemon=True)
        self._thread.start()
        for sink in self.sinks:
            sink.attach_feeder(self.hand_over)

    # -- emitting thread ----------------------------------------------------------------
    def put(self, event: Event) -> None:
        queue = self._queue
        if len(queue) >= self.capacity or self._closed:
            for sink in self.sinks:
                sink.dropped += 1
            return
        queue.append(event)
        size = len(queue)
        # Event.set() takes a lock, so it is called only when it changes something.
        if size == 1:
            if not self._arrived.is_set():
                self._arrived.set()
        elif size >= self.wake_at and not self._wake.is_set():
            self._wake.set()

    # -- any thread -----------------------------------------------------------------------
    def hand_over(self) -> None:
        """Give every sink what is queued now (the fan-out's thread, `wait_idle`, close)."""
        with self._lock:
            queue = self._queue
            count = len(queue)
            if not count:
                return
            popleft = queue.popleft
            batch = [popleft() for _ in range(count)]
            for sink in self.sinks:
                sink.accept(batch)

    def close(self, timeout_s: float = 5.0) -> None:
        """Hand over what is left, and stop taking events (they are dropped and counted)."""
        self._closed = True
        self._wake.set()
        self._arrived.set()
        self._thread.join(timeout_s)
        self.hand_over()

    # -- the fan-out's thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            # The timeout covers two emitting threads both missing the empty -> one event step.
            self._arrived.wait(self.window_s)
            self._arrived.clear()
            if self._queue and not self._wake.is_set():
                self._wake.wait(self.window_s)
            self._wake.clear()
            self.hand_over()
            if self._queue:
                self._arrived.set()

    @property
    def pending(self) -> int:
        return len(self._queue)
