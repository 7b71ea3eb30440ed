"""The telemetry pipeline: the one bus subscriber that feeds every sink.

On the emitting thread it only samples debug events, stamps `event.id` and appends the event to
the fan-out, which hands it to every queued sink later, in a batch (fanout.py); a sink that is
not a QueuedSink is offered it directly (never blocking). A reporter thread turns the sinks'
drop counters into `telemetry.dropped` events, once a second at most per sink.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level
from flowscope.telemetry.fanout import FanOut
from flowscope.telemetry.ids import uuid7
from flowscope.telemetry.sinks.queued import QueuedSink

DROP_REPORT_INTERVAL_S = 1.0


class Sink(Protocol):
    name: str
    dropped: int

    def offer(self, event: Event) -> bool:
        """Take the event without blocking; False if it had to be dropped."""

    def close(self, timeout_s: float = 5.0) -> None: ...


# Spec §4: never sampled, whatever level they are emitted at.
NEVER_SAMPLED = frozenset(
    action
    for action in Action
    if action.value.startswith("job.") or action.value.endswith((".succeeded", ".failed"))
)


class DebugSampler:
    """Keeps a `rate` share of debug events; never touches warn/error or any other level, nor
    the actions that spec §4 never samples (job.*, *.succeeded, *.failed) even at debug."""

    def __init__(self, rate: float = 1.0, draw: Callable[[], float] = random.random) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"debug sampling rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self._draw = draw

    def keep(self, event: Event) -> bool:
        if event.level is not Level.DEBUG or self.rate >= 1.0 or event.action in NEVER_SAMPLED:
            return True
        if self._draw() >= self.rate:
            return False
        if event.fields is None:
            event.fields = {}
        event.fields["sampling.rate"] = self.rate
        return True


class TelemetryPipeline:
    def __init__(
        self,
        bus: EventBus,
        sinks: Sequence[Sink],
        *,
        sampler: DebugSampler | None = None,
        report_interval_s: float = DROP_REPORT_INTERVAL_S,
    ) -> None:
        self.bus = bus
        self.sinks = list(sinks)
        self.sampler = sampler or DebugSampler()
        # Queued sinks are fed in batches through the fan-out; any other sink is offered each
        # event on the emitting thread.
        queued = [sink for sink in self.sinks if isinstance(sink, QueuedSink)]
        self._fanout = FanOut(queued) if queued else None
        self._put = self._fanout.put if self._fanout is not None else None
        self._direct = [
            (index, sink)
            for index, sink in enumerate(self.sinks)
            if not isinstance(sink, QueuedSink)
        ]
        # Per sink position (two sinks may share a name): drops already reported, and offers
        # that raised (a broken sink must not starve the sinks after it).
        self._reported = [0] * len(self.sinks)
        self._offer_errors = [0] * len(self.sinks)
        self._stop = threading.Event()
        self._reporter = threading.Thread(
            target=self._report_loop, args=(report_interval_s,), name="flowscope-drops", daemon=True
        )
        self._unsubscribe = bus.subscribe(self)
        self._reporter.start()

    def __call__(self, event: Event) -> None:
        if event.level is Level.DEBUG and not self.sampler.keep(event):
            return
        fields = event.fields
        if fields is None:
            fields = event.fields = {}
        if "event.id" not in fields:
            # Stamped once, before fan-out: every sink writes the same id for the same event.
            fields["event.id"] = uuid7()
        if self._put is not None:
            self._put(event)
        for index, sink in self._direct:
            try:
                sink.offer(event)
            except Exception:
                self._offer_errors[index] += 1

    def hand_over(self) -> None:
        """Give the queued sinks every event taken so far now, rather than at the end of the
        burst (their `wait_idle` does this too)."""
        if self._fanout is not None:
            self._fanout.hand_over()

    def report_drops(self) -> None:
        """Emit a `telemetry.dropped` event for each sink that lost events since the last report."""
        self.hand_over()  # the queued sinks count what they cannot take when they get it
        for index, sink in enumerate(self.sinks):
            total = sink.dropped + self._offer_errors[index]
            delta = total - self._reported[index]
            if delta <= 0:
                continue
            self._reported[index] = total
            self.bus.emit(
                Event(
                    Action.TELEMETRY_DROPPED,
                    f"sink {sink.name} dropped {delta} events",
                    time.time_ns(),
                    Level.WARN,
                    {"telemetry.sink": sink.name, "telemetry.dropped": delta},
                )
            )

    def _report_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.report_drops()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking events, report the last drops, and close every sink (flushing it)."""
        self._stop.set()
        self._reporter.join(timeout_s)
        self.report_drops()  # still subscribed, sinks still open: the report gets written
        self._unsubscribe()
        if self._fanout is not None:
            self._fanout.close(timeout_s)
        for sink in self.sinks:
            sink.close(timeout_s)
