"""The pipeline's fan-out: the emitting thread appends each event once and calls no sink; a
burst reaches every queued sink in one batch, a window after it began (or at once when someone
waits for the sinks); a full fan-out drops for every sink, counted. And the queued sink's own
clock: a burst is always given its whole window, however the sink was woken before."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from flowscope.telemetry import Action, Event, EventBus, Level
from flowscope.telemetry.pipeline import TelemetryPipeline
from flowscope.telemetry.sinks.queued import QueuedSink


def event(sequence: int) -> Event:
    return Event(
        Action.NODE_STARTED,
        "node started",
        time.time_ns(),
        Level.INFO,
        {"event.sequence": sequence},
    )


class Recording(QueuedSink):
    """Keeps its batches, and the threads that offered to it or handed it batches."""

    def __init__(self, name: str = "rec", write_s: float = 0.0, **options: Any) -> None:
        super().__init__(name, **options)
        self.write_s = write_s  # how long a write takes
        self.batches: list[list[Event]] = []
        self.offered_on: set[str] = set()
        self.accepted_on: set[str] = set()
        self.accepted_at: list[float] = []

    def offer(self, event: Event) -> bool:
        self.offered_on.add(threading.current_thread().name)
        return super().offer(event)

    def accept(self, events: Sequence[Event]) -> None:
        self.accepted_on.add(threading.current_thread().name)
        self.accepted_at.append(time.monotonic())
        super().accept(events)

    def write_batch(self, events: Sequence[Event]) -> None:
        time.sleep(self.write_s)
        self.batches.append(list(events))

    @property
    def sequences(self) -> list[Any]:
        return [e.get("event.sequence") for batch in self.batches for e in batch]


def wait_until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_burst_reaches_every_sink_in_one_hand_over_after_its_window() -> None:
    bus = EventBus()
    first = Recording("first", flush_interval_s=0.3)
    second = Recording("second", flush_interval_s=0.3)
    pipeline = TelemetryPipeline(bus, [first, second], report_interval_s=3600)
    try:
        began = time.monotonic()
        for sequence in range(50):
            bus.emit(event(sequence))
        wait_until(lambda: len(first.sequences) == 50 and len(second.sequences) == 50)
        for sink in (first, second):
            assert sink.offered_on == set()  # the emitting thread called no sink
            assert sink.accepted_on == {"flowscope-fanout"}
            assert len(sink.accepted_at) == 1  # the whole burst, in one hand-over
            assert sink.accepted_at[0] - began >= 0.25  # after the burst's window
            assert sink.sequences == list(range(50))
    finally:
        pipeline.close()


def test_waiting_for_a_sink_hands_over_what_the_fan_out_holds() -> None:
    bus = EventBus()
    sink = Recording(flush_interval_s=3600)
    pipeline = TelemetryPipeline(bus, [sink], report_interval_s=3600)
    try:
        for sequence in range(5):
            bus.emit(event(sequence))
        assert sink.batches == []
        assert sink.wait_idle()
        assert sink.sequences == list(range(5))
    finally:
        pipeline.close()


def test_closing_a_sink_alone_takes_what_the_fan_out_holds() -> None:
    bus = EventBus()
    sink = Recording(flush_interval_s=3600)
    pipeline = TelemetryPipeline(bus, [sink], report_interval_s=3600)
    for sequence in range(3):
        bus.emit(event(sequence))
    sink.close()
    assert sink.sequences == [0, 1, 2]
    bus.emit(event(3))  # the sink is closed: dropped and counted when handed over
    pipeline.close()
    assert sink.dropped >= 1
    assert sink.sequences == [0, 1, 2]


def test_a_full_fan_out_drops_for_every_sink_and_counts_it() -> None:
    bus = EventBus()
    small = Recording("small", capacity=3, flush_interval_s=3600)
    large = Recording("large", capacity=4, flush_interval_s=3600)
    pipeline = TelemetryPipeline(bus, [small, large], report_interval_s=3600)
    try:
        for sequence in range(6):
            bus.emit(event(sequence))
        # The fan-out holds as many as the largest sink: 4 taken, 2 dropped for both.
        assert (small.dropped, large.dropped) == (2, 2)
        pipeline.hand_over()
        # The small sink takes 3 of those 4 and counts the fourth.
        assert (small.dropped, large.dropped) == (3, 2)
        assert small.wait_idle() and large.wait_idle()
        assert (small.sequences, large.sequences) == ([0, 1, 2], [0, 1, 2, 3])
    finally:
        pipeline.close()


def test_a_burst_after_wait_idle_is_still_given_its_whole_window() -> None:
    """wait_idle wakes the sink's thread, also while it is writing; no leftover wake-up may start
    the next burst's clock early (it would write in the middle of that burst: the next job)."""
    sink = Recording(flush_interval_s=1.0, write_s=0.1)
    try:
        sink.offer(event(0))
        assert sink.wait_idle()
        time.sleep(0.3)
        offered = time.monotonic()
        sink.offer(event(1))
        wait_until(lambda: len(sink.batches) == 2)
        assert time.monotonic() - offered >= 0.95
    finally:
        sink.close()
