"""Runs a synchronous sink on a background thread: the emitting thread only enqueues.

For sinks whose per-event work is cheap but not free (the metrics sink's histogram and exemplar
updates cost a few µs), so that a 10,000-node job does not pay it inline.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowscope.telemetry.events import Event
from flowscope.telemetry.pipeline import Sink
from flowscope.telemetry.sinks.queued import QueuedSink


class DeferredSink(QueuedSink):
    def __init__(self, inner: Sink, *, capacity: int = 100_000, batch_size: int = 1_000) -> None:
        super().__init__(inner.name, capacity=capacity, batch_size=batch_size)
        self.inner = inner

    def write_batch(self, events: Sequence[Event]) -> None:
        for event in events:
            self.inner.offer(event)

    def close_output(self) -> None:
        self.inner.close()
