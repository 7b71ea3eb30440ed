"""The log store sink's writer process: events reach the store through it, `wait_idle` means
committed, rows it could not store or lost with it are counted as dropped, and a dead writer is
replaced."""

from __future__ import annotations

import enum
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowscope.logstore import LogStore, LogStoreSink
from flowscope.logstore import sink as sink_module
from flowscope.logstore.writer import WRITER_NICE
from flowscope.telemetry.events import Action, Event, Level
from flowscope.telemetry.ids import uuid7


def node_event(sequence: int, **fields: object) -> Event:
    return Event(
        Action.NODE_SUCCEEDED,
        "node succeeded",
        time.time_ns(),
        Level.INFO,
        {
            "event.id": uuid7(),
            "job.id": "job-1",
            "event.sequence": sequence,
            "node.type": "KSampler",
            "node.inputs": {"seed": sequence},
            **fields,
        },
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Callable[..., LogStoreSink]]:
    opened: list[LogStoreSink] = []

    def make(**options: object) -> LogStoreSink:
        sink = LogStoreSink(tmp_path / "logstore.db", flush_interval_s=0.01, **options)  # type: ignore[arg-type]
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        sink.close()


def test_the_writer_runs_at_a_lower_cpu_priority(sinks: Callable[..., LogStoreSink]) -> None:
    sink = sinks()
    assert sink.writer_pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, sink.writer_pid) == min(ours + WRITER_NICE, 19)
    assert sink.offer(node_event(1))
    assert sink.wait_idle()  # and it still writes


@pytest.mark.parametrize("separate_process", [True, False])
def test_events_are_committed_when_wait_idle_returns(
    sinks: Callable[..., LogStoreSink], separate_process: bool
) -> None:
    sink = sinks(separate_process=separate_process)
    if separate_process:
        assert sink.writer_pid not in (None, os.getpid())
    else:
        assert sink.writer_pid is None
    for sequence in range(1, 26):
        assert sink.offer(node_event(sequence, **{"event.duration": 2**70}))
    assert sink.wait_idle()
    # Read through another connection: committed, not just sent.
    with LogStore(sink.store.path, create=False) as reader:
        documents = reader.search("job.id:job-1", oldest_first=True)
    assert [d["event.sequence"] for d in documents] == list(range(1, 26))
    # An integer SQLite cannot hold in its typed column is kept, in the row's JSON.
    assert documents[0]["event.duration"] == 2**70
    assert documents[0]["node.inputs"] == {"seed": 1}
    assert (sink.written, sink.dropped) == (25, 0)


def test_the_writer_ends_with_the_sink(sinks: Callable[..., LogStoreSink]) -> None:
    sink = sinks()
    sink.offer(node_event(1))
    pid = sink.writer_pid
    assert pid is not None
    sink.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    with LogStore(sink.store.path, create=False) as reader:
        assert reader.count() == 1


def test_rows_the_writer_cannot_store_are_counted_as_dropped(
    sinks: Callable[..., LogStoreSink],
) -> None:
    sink = sinks()
    sink.offer(node_event(1))
    assert sink.wait_idle()
    # Pull the table out from under the writer: its next inserts fail.
    connection = sqlite3.connect(sink.store.path)
    connection.executescript("DROP TABLE events_fts; DROP TABLE events;")
    connection.close()
    for sequence in range(2, 12):
        sink.offer(node_event(sequence))
    assert sink.wait_idle()
    assert (sink.written, sink.dropped) == (1, 10)
    assert sink.last_error is not None and "events" in sink.last_error


def test_a_dead_writer_loses_only_what_it_had_not_confirmed_and_is_replaced(
    sinks: Callable[..., LogStoreSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "RESTART_INTERVAL_S", 0.0)
    sink = sinks()
    sink.offer(node_event(1))
    assert sink.wait_idle()
    first = sink.writer_pid
    assert first is not None

    os.kill(first, signal.SIGSTOP)  # sent rows now wait in the pipe, unconfirmed
    for sequence in range(2, 7):
        sink.offer(node_event(sequence))
    wait_for(lambda: sink.written == 6)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: sink.dropped == 5)
    assert sink.written == 1
    assert sink.last_error is not None and "writer process" in sink.last_error

    sink.offer(node_event(7))  # a new writer takes over
    assert sink.wait_idle()
    assert sink.writer_pid not in (None, first)
    with LogStore(sink.store.path, create=False) as reader:
        stored = [d["event.sequence"] for d in reader.search(oldest_first=True)]
    assert stored == [1, 7]
    assert (sink.written, sink.dropped) == (2, 5)


class Shade(enum.IntEnum):
    DARK = 3


class Sampler:
    """A value of a class the writer process could not import (defined in a test module)."""

    def __str__(self) -> str:
        return "<sampler euler>"


def test_values_of_any_type_are_stored_as_the_json_would_hold_them(
    sinks: Callable[..., LogStoreSink],
) -> None:
    sink = sinks()
    lock = threading.Lock()
    odd = {"0": lock, "1": Sampler(), "2": Shade.DARK, "3": Path("/m/x.safetensors"), "4": (1, 2)}
    sink.offer(node_event(1, **{"node.outputs": odd, "node.type": Level.INFO}))
    assert sink.wait_idle()
    (document,) = sink.store.search()
    assert document["node.outputs"] == {
        "0": str(lock),
        "1": "<sampler euler>",
        "2": 3,
        "3": "/m/x.safetensors",
        "4": [1, 2],
    }
    assert document["node.type"] == "info"
    assert (sink.written, sink.dropped) == (1, 0)
