"""The telemetry pipeline and its parts: UUIDv7 event ids, debug sampling, non-blocking fan-out,
drops counted and reported as `telemetry.dropped`, and the queued sink's lifecycle."""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from flowscope.telemetry import Action, Event, EventBus, InMemorySubscriber, Level
from flowscope.telemetry.document import DocumentBuilder, ServiceInfo
from flowscope.telemetry.ids import new_span_id, new_trace_id, uuid7
from flowscope.telemetry.pipeline import DebugSampler, TelemetryPipeline
from flowscope.telemetry.sinks.queued import QueuedSink

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def event(
    action: Action = Action.NODE_SUCCEEDED, level: Level = Level.INFO, **fields: Any
) -> Event:
    return Event(action, action.value, time.time_ns(), level, fields)


class Collecting(QueuedSink):
    """A real queued sink that keeps what it writes; `gate` can hold its thread mid-batch."""

    def __init__(self, name: str = "collect", **options: Any) -> None:
        super().__init__(name, **options)
        self.batches: list[list[Event]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()
        self.closed_on: str | None = None

    def write_batch(self, events: Sequence[Event]) -> None:
        self.writing.set()
        self.gate.wait()
        self.batches.append(list(events))

    def close_output(self) -> None:
        self.closed_on = threading.current_thread().name

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


class Failing(QueuedSink):
    def write_batch(self, events: Sequence[Event]) -> None:
        raise ConnectionError("collector unreachable")


class BrokenOffer:
    """Not a QueuedSink: a sink whose offer itself raises (a bug in a third-party sink)."""

    name = "broken"
    dropped = 0

    def offer(self, event: Event) -> bool:
        raise RuntimeError("bug")

    def close(self, timeout_s: float = 5.0) -> None:
        pass


# -- ids ----------------------------------------------------------------------------------
def test_uuid7_format_and_embedded_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert UUID7.match(value), value
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_uuid7_sorts_in_creation_order_even_within_a_millisecond() -> None:
    ids = [uuid7() for _ in range(20_000)]  # many per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert len({i[:13] for i in ids}) < len(ids)  # some really did share a millisecond


def _ids_in_child(queue: Any) -> None:
    queue.put([uuid7() for _ in range(50)] + [new_trace_id(), new_span_id()])


def test_a_forked_process_does_not_repeat_its_parents_ids() -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_ids_in_child, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
    first, second = results
    parent = [uuid7() for _ in range(50)] + [new_trace_id(), new_span_id()]
    # Random parts differ even when the clock part is the same.
    random_parts = [[i[-12:] for i in ids] for ids in (first, second, parent)]
    assert not set(random_parts[0]) & set(random_parts[1])
    assert not set(random_parts[0]) & set(random_parts[2])


def test_trace_and_span_ids() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    assert len({new_trace_id() for _ in range(1000)}) == 1000


# -- sampling -----------------------------------------------------------------------------
def test_sampling_never_touches_warn_error_or_lifecycle_events() -> None:
    sampler = DebugSampler(0.0)  # would drop every debug event it may sample
    for action in Action:
        for level in (Level.INFO, Level.WARN, Level.ERROR):
            kept = event(action, level)
            assert sampler.keep(kept)
            assert kept.get("sampling.rate") is None
    # job.*, *.succeeded and *.failed are never sampled, even when emitted at debug level.
    for action in (Action.JOB_QUEUED, Action.NODE_SUCCEEDED, Action.NODE_FAILED, Action.JOB_FAILED):
        assert sampler.keep(event(action, Level.DEBUG))
    assert not sampler.keep(event(Action.NODE_PROGRESS, Level.DEBUG))


def test_kept_debug_events_carry_the_sampling_rate() -> None:
    draws = iter([0.1, 0.7, 0.2, 0.9])
    sampler = DebugSampler(0.25, draw=lambda: next(draws))
    progress = [event(Action.NODE_PROGRESS, Level.DEBUG) for _ in range(4)]
    progress[2].fields = None  # a bare event still gets the rate
    kept = [e for e in progress if sampler.keep(e)]
    assert kept == [progress[0], progress[2]]
    assert [e.get("sampling.rate") for e in kept] == [0.25, 0.25]


def test_rate_one_keeps_everything_unmarked() -> None:
    progress = event(Action.NODE_PROGRESS, Level.DEBUG)
    assert DebugSampler(1.0).keep(progress)
    assert progress.get("sampling.rate") is None


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        DebugSampler(rate)


def test_the_pipeline_samples_before_every_sink() -> None:
    bus = EventBus()
    sink = Collecting()
    pipeline = TelemetryPipeline(bus, [sink], sampler=DebugSampler(0.0))
    bus.emit(event(Action.NODE_PROGRESS, Level.DEBUG))
    bus.emit(event(Action.NODE_SUCCEEDED))
    pipeline.close()
    assert [e.action for e in sink.events] == [Action.NODE_SUCCEEDED]


# -- fan-out ------------------------------------------------------------------------------
def test_every_sink_gets_the_same_event_id() -> None:
    bus = EventBus()
    first, second = Collecting("first"), Collecting("second")
    pipeline = TelemetryPipeline(bus, [first, second])
    for _ in range(10):
        bus.emit(event())
    given = event(**{"event.id": "from-upstream"})
    bus.emit(given)
    pipeline.close()
    ids = [e.get("event.id") for e in first.events]
    assert ids == [e.get("event.id") for e in second.events]
    assert all(UUID7.match(i) for i in ids[:10])
    assert ids[10] == "from-upstream"  # an id set upstream (e.g. a requeued job) is kept


def test_a_slow_sink_never_blocks_the_emitter_and_its_drops_are_reported() -> None:
    bus = EventBus()
    reports = InMemorySubscriber(bus, [Action.TELEMETRY_DROPPED])
    slow = Collecting("slow", capacity=100, batch_size=10, flush_interval_s=0.01)
    fast = Collecting("fast", capacity=10_000)
    slow.gate.clear()  # the slow sink's thread is stuck in its first write
    pipeline = TelemetryPipeline(bus, [slow, fast], report_interval_s=3600)

    bus.emit(event(**{"event.sequence": 0}))
    assert slow.writing.wait(5)  # its thread took that event and is stuck writing it
    for i in range(1, 2_000):
        bus.emit(event(**{"event.sequence": i}))
    # All 2,000 emits returned while the slow sink wrote nothing.
    assert slow.batches == []
    pipeline.hand_over()  # the sinks count what they cannot take when the fan-out gives it
    assert slow.dropped == 2_000 - 1 - 100  # one held in the stuck write, 100 queued
    assert fast.wait_idle()
    assert len(fast.events) == 2_000

    dropped = slow.dropped
    pipeline.report_drops()
    (report,) = reports.events
    assert report.action is Action.TELEMETRY_DROPPED
    assert report.level is Level.WARN
    assert report.get("telemetry.sink") == "slow"
    assert report.get("telemetry.dropped") == dropped
    assert report.message == f"sink slow dropped {dropped} events"
    # The report itself went through the pipeline, and the full slow sink dropped it too:
    # the next report carries only that one new drop.
    pipeline.report_drops()
    assert [r.get("telemetry.dropped") for r in reports.events] == [dropped, 1]

    slow.gate.set()
    pipeline.close()
    # Every event, the reports included, was either written or counted as dropped.
    assert slow.dropped + len(slow.events) == 2_000 + len(reports.events)
    assert fast.events[-1].action is Action.TELEMETRY_DROPPED


def test_a_raising_sink_loses_its_batches_counted_and_the_others_carry_on() -> None:
    bus = EventBus()
    reports = InMemorySubscriber(bus, [Action.TELEMETRY_DROPPED])
    failing = Failing("fluentd", flush_interval_s=0.01)
    healthy = Collecting()
    pipeline = TelemetryPipeline(bus, [failing, healthy], report_interval_s=0.05)
    for _ in range(25):
        bus.emit(event())
    deadline = time.monotonic() + 5
    while not reports.events and time.monotonic() < deadline:
        time.sleep(0.01)  # the reporter thread reports by itself
    pipeline.close()

    assert failing.last_error == "ConnectionError: collector unreachable"
    reported = sum(r.get("telemetry.dropped") for r in reports.of(Action.TELEMETRY_DROPPED))
    assert reports.events[0].get("telemetry.sink") == "fluentd"
    # Every event it was offered is lost and counted, and every loss but the last report's own
    # (written after the final report) was reported.
    assert failing.dropped >= 25
    assert reported >= 25
    assert len([e for e in healthy.events if e.action is Action.NODE_SUCCEEDED]) == 25


def test_a_sink_whose_offer_raises_does_not_starve_the_next() -> None:
    bus = EventBus()
    reports = InMemorySubscriber(bus, [Action.TELEMETRY_DROPPED])
    healthy = Collecting()
    pipeline = TelemetryPipeline(bus, [BrokenOffer(), healthy], report_interval_s=3600)
    for _ in range(5):
        bus.emit(event())
    pipeline.report_drops()
    pipeline.close()
    assert bus.subscriber_errors == 0
    assert len([e for e in healthy.events if e.action is Action.NODE_SUCCEEDED]) == 5
    # 5 events, then the first report itself (reported when the pipeline closed).
    assert [(r.get("telemetry.sink"), r.get("telemetry.dropped")) for r in reports.events] == [
        ("broken", 5),
        ("broken", 1),
    ]


def test_sinks_sharing_a_name_are_reported_separately() -> None:
    bus = EventBus()
    reports = InMemorySubscriber(bus, [Action.TELEMETRY_DROPPED])
    first = Collecting("file", capacity=1, flush_interval_s=3600)
    second = Collecting("file", capacity=3, flush_interval_s=3600)
    pipeline = TelemetryPipeline(bus, [first, second], report_interval_s=3600)
    for _ in range(5):
        bus.emit(event())
    pipeline.report_drops()
    pipeline.close()
    # First sink: 4 of 5 (capacity 1). Second: 2 of 5 (capacity 3); the reports themselves,
    # dropped too once handed over, come in the next reports.
    assert [(r.get("telemetry.sink"), r.get("telemetry.dropped")) for r in reports.events][:2] == [
        ("file", 4),
        ("file", 2),
    ]


# -- the queued sink ----------------------------------------------------------------------
def test_close_writes_what_is_queued_and_closes_on_the_sinks_thread() -> None:
    sink = Collecting(flush_interval_s=3600, batch_size=1_000)
    for _ in range(10):
        sink.offer(event())
    sink.close()
    assert len(sink.events) == 10
    assert sink.closed_on == "flowscope-sink-collect"
    assert not sink.offer(event())  # closed: refused and counted
    assert sink.dropped == 1


def test_close_never_closes_the_output_under_a_write_in_progress() -> None:
    sink = Collecting(flush_interval_s=0.01)
    sink.gate.clear()
    sink.offer(event())
    assert sink.writing.wait(5)
    sink.close(timeout_s=0.05)  # gives up waiting: the batch is still being written
    assert sink.closed_on is None
    sink.gate.set()
    deadline = time.monotonic() + 5
    while sink.closed_on is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(sink.events) == 1
    assert sink.closed_on == "flowscope-sink-collect"


def test_a_burst_waits_for_the_timer_until_wake_at_events_are_queued() -> None:
    sink = Collecting(capacity=1_000, batch_size=10, flush_interval_s=3600)
    assert sink.wake_at == 100  # a tenth of the queue, at least one batch
    for _ in range(99):
        sink.offer(event())
    time.sleep(0.05)
    assert sink.batches == []  # below wake_at: left for the timer, the emitter keeps the GIL
    sink.offer(event())
    deadline = time.monotonic() + 5
    while len(sink.events) < 100 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [len(batch) for batch in sink.batches] == [10] * 10
    sink.close()


def test_a_burst_is_written_one_flush_interval_after_its_first_event() -> None:
    sink = Collecting(flush_interval_s=1.0)
    time.sleep(0.3)  # the writer's idle clock runs: it must not decide when the burst is written
    first = time.monotonic()
    for _ in range(3):
        sink.offer(event())
        time.sleep(0.02)
    assert sink.batches == []  # the burst is still being emitted: nothing competes with it
    deadline = time.monotonic() + 5
    while not sink.batches and time.monotonic() < deadline:
        time.sleep(0.005)
    assert time.monotonic() - first >= 0.95
    assert [len(batch) for batch in sink.batches] == [3]  # one write, after the burst
    sink.close()


def test_a_sink_never_offered_anything_closes_on_the_callers_thread() -> None:
    sink = Collecting()
    sink.close()
    assert sink.closed_on == threading.current_thread().name


# -- documents ----------------------------------------------------------------------------
def test_documents_add_service_fields_and_event_fields_win() -> None:
    service = ServiceInfo(name="flowscope", version="9.9", environment="prod", node_name="gpu-1")
    built = DocumentBuilder(service)(
        Event(
            Action.JOB_STARTED,
            "job started",
            1_700_000_000_123_456_789,
            Level.INFO,
            {"job.id": "j", "host.name": "from-event"},
        )
    )
    assert built["@timestamp"] == "2023-11-14T22:13:20.123456Z"
    assert built["service.version"] == "9.9"
    assert built["service.environment"] == "prod"
    assert built["service.node.name"] == "gpu-1"
    assert built["host.name"] == "from-event"
    assert list(built)[:4] == ["@timestamp", "log.level", "message", "event.action"]


def test_wake_at_one_writes_each_event_at_once() -> None:
    sink = Collecting(flush_interval_s=3600, wake_at=1)
    sink.offer(event())
    deadline = time.monotonic() + 5
    while not sink.batches and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(sink.events) == 1
    sink.close()
