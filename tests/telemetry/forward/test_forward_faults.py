"""At least once under faults: the receiver down for a while, a receiver that does not ack and
then does, a receiver restarted mid-stream, a sender SIGKILLed with a full spool, a graceful
restart, and the spool's size bound while the receiver is away. Every event arrives at least
once, and every duplicate is the same document (same `event.id`)."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from forward_helpers import EventSource, assert_all_arrived_once_or_more
from forward_receiver import ForwardReceiver

from flowscope.telemetry import Action, InMemorySubscriber
from flowscope.telemetry.forward import ForwardSink

Receivers = Callable[..., ForwardReceiver]
Sinks = Callable[..., ForwardSink]
CHILD = Path(__file__).parent / "forward_spool_child.py"


def test_receiver_down_for_a_while_then_up(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    receiver.stop()  # its port is now closed: connections are refused
    sink = sinks(receiver.port, batch_size=20)
    ids = EventSource(sink).emit(100)
    assert receiver.wait_for(lambda: sink.spooled_events == 100, 5)
    time.sleep(0.3)  # several refused reconnects, with backoff
    assert "cannot connect" in str(sink.last_error)
    receiver.start()
    assert sink.wait_delivered(5)
    assert assert_all_arrived_once_or_more(receiver, ids) == []


def test_receiver_that_does_not_ack_then_does(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    receiver.acking = False
    sink = sinks(receiver.port, batch_size=20, ack_timeout_s=0.2)
    ids = EventSource(sink).emit(60)
    assert receiver.wait_for(lambda: sink.sender.resent_chunks >= 3, 5)
    assert "no ack for chunk" in str(sink.last_error)
    assert sink.delivered == 0 and sink.spooled_events == 60
    receiver.acking = True
    assert sink.wait_delivered(5)
    duplicates = assert_all_arrived_once_or_more(receiver, ids)
    assert duplicates  # the unacked first copies were resent: same documents, same event.id


def test_receiver_restarted_mid_stream(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    sink = sinks(receiver.port, batch_size=10, max_in_flight=8)
    source = EventSource(sink)
    ids: list[str] = []
    for round_ in range(20):
        ids += source.emit(25)
        if round_ in (4, 9, 14):
            receiver.restart()  # every open connection is reset, acks in flight are lost
        if round_ == 16:
            receiver.stop()
        time.sleep(0.01)
    time.sleep(0.1)
    receiver.start()
    assert sink.wait_delivered(10)
    assert_all_arrived_once_or_more(receiver, ids)
    assert sink.sender.connections >= 4


@pytest.mark.slow
def test_sender_killed_with_a_full_spool(receivers: Receivers, tmp_path: Path) -> None:
    receiver = receivers()
    receiver.acking = False  # the child sends everything and gets no ack
    spool_dir = tmp_path / "spool"
    with subprocess.Popen(
        [sys.executable, str(CHILD), str(receiver.port), str(spool_dir), "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stderr is not None
            ready, _, _ = select.select([child.stdout], [], [], 20)
            assert ready, "the child printed nothing within 20 s"
            line = child.stdout.readline()
            assert line, child.stderr.read()
            ids = json.loads(line)
            assert receiver.wait_for(lambda: len(receiver.all_records()) >= 500, 10)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    assert child.returncode == -signal.SIGKILL
    spooled = list(spool_dir.glob("*.fwd"))
    assert sum(int(path.name.split("-")[1]) for path in spooled) == 500

    receiver.acking = True
    sink = ForwardSink(
        "127.0.0.1", receiver.port, spool_dir=spool_dir, flush_interval_s=0.02, ack_timeout_s=1
    )
    try:
        assert sink.wait_delivered(10)  # nothing new offered: only the replayed chunks
    finally:
        sink.close(0)
    duplicates = assert_all_arrived_once_or_more(receiver, ids)
    assert len(duplicates) >= 500  # the child's unacked copies, then the replay
    assert list(spool_dir.glob("*.fwd")) == []


def test_unacked_chunks_survive_a_graceful_restart(
    receivers: Receivers, sinks: Sinks, tmp_path: Path
) -> None:
    receiver = receivers()
    receiver.stop()
    first = sinks(receiver.port, spool_dir=tmp_path / "spool")
    ids = EventSource(first).emit(30)
    first.close(0.2)  # the receiver is down: nothing can be acked
    assert len(list((tmp_path / "spool").glob("*.fwd"))) >= 1

    receiver.start()
    second = sinks(receiver.port, spool_dir=tmp_path / "spool")
    assert second.wait_delivered(5)
    assert assert_all_arrived_once_or_more(receiver, ids) == []


def test_spool_bound_drops_the_oldest_and_reports_it(receivers: Receivers, sinks: Sinks) -> None:
    receiver = receivers()
    receiver.stop()
    sink = sinks(receiver.port, batch_size=10, compress=False, max_spool_bytes=12_000)
    source = EventSource(sink)
    drops = InMemorySubscriber(source.bus, actions=[Action.TELEMETRY_DROPPED])
    ids: list[str] = []
    for _ in range(10):  # ten chunks of ten, a few kB each, into a 12 kB spool
        ids += source.emit(10)
        assert sink.wait_idle(5)
    assert sink.spool.size_bytes <= 12_000
    dropped = sink.spool.dropped_events
    assert dropped >= 50 and sink.dropped == dropped

    source.pipeline.report_drops()
    (report,) = drops.events
    assert report.get("telemetry.sink") == "forward"
    assert report.get("telemetry.dropped") == dropped

    receiver.start()
    assert sink.wait_delivered(5)
    shipped = [
        r["event.id"] for r in receiver.acked_records() if r["event.action"] != "telemetry.dropped"
    ]
    assert shipped == ids[dropped:]  # the newest survive, the oldest were dropped
