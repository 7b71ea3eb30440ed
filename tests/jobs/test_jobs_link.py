"""The server ⇄ worker-process link: messages survive the wire, frames end cleanly, and the
worker's end reports a vanished server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jobs_support import outcome

from flowscope.jobs import server_link
from flowscope.jobs.link import (
    Events,
    FrameReader,
    FrameWriter,
    Free,
    Interrupt,
    JobFinished,
    JobStarted,
    Message,
    Ready,
    Stop,
    Waiting,
    Wake,
)
from flowscope.jobs.model import QueuedJob
from flowscope.jobs.server_link import ServerLink
from flowscope.telemetry import Action, EventBus
from flowscope.telemetry.events import Event, Level


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def queued_job(**fields: Any) -> QueuedJob:
    values: dict[str, Any] = {
        "number": 3.0,
        "job_id": "job-1",
        "prompt": {"1": {"class_type": "StubInt", "inputs": {"value": 1}}},
        "extra_data": {"client_id": "me"},
        "outputs": ["1"],
        "sensitive": {"auth_token_comfy_org": "secret"},
        "state": "running",
        "created_at_ms": 1000,
        "attempts": 1,
        "trace_id": "ab" * 16,
        "worker_id": "host:1:0",
    }
    return QueuedJob(**{**values, **fields})


def event(action: Action = Action.NODE_SUCCEEDED, **detail: Any) -> Event:
    fields = {"job.id": "job-1", "node.id": "2", "event.duration": 12}
    return Event(action, "node succeeded", 123, Level.INFO, fields, detail or None)


def test_reports_and_commands_arrive_as_sent(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    job = queued_job()
    sent: list[Message] = [
        Ready("host:2:0"),
        JobStarted(job),
        Events([event(), event(Action.NODE_PROGRESS, preview=("JPEG", b"\xff\xd8", 512))]),
        JobFinished(job, outcome()),
        Waiting(),
        Wake(),
        Interrupt("job-1"),
        Interrupt(None),
        Free(unload_models=True, free_memory=False),
        Stop(2.5, interrupt=True),
    ]
    FrameWriter(ours).send(sent)
    received = FrameReader(theirs).receive()
    assert received is not None
    started, finished = received[1], received[3]
    assert isinstance(started, JobStarted) and isinstance(finished, JobFinished)
    # The job travels without its prompt and secrets: the server's store has them.
    stripped = queued_job(prompt={}, sensitive={})
    assert started.job == stripped and finished.job == stripped
    assert finished.outcome == outcome()
    assert received[2] == sent[2]
    assert received[0:1] + received[4:] == sent[0:1] + sent[4:]


def test_an_unpicklable_detail_value_becomes_a_short_repr(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    unpicklable = threading.Lock()
    FrameWriter(ours).send([Events([event(ui={"text": ["ok"]}, handle=unpicklable)])])
    received = FrameReader(theirs).receive()
    assert received is not None
    (events,) = received
    assert isinstance(events, Events)
    detail = events.events[0].detail
    assert detail is not None
    assert detail["ui"] == {"text": ["ok"]}  # what pickles is kept as it is
    assert isinstance(detail["handle"], str) and "lock" in detail["handle"].lower()


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["job.id", "node.id", "node.type", "event.duration", "x.y"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
        ),
        max_size=20,
    )
)
def test_events_keep_their_fields_and_order(field_sets: list[dict[str, Any]]) -> None:
    ours, theirs = socket.socketpair()
    try:
        events = [
            Event(Action.NODE_STARTED, f"n{i}", i, Level.DEBUG, fields)
            for i, fields in enumerate(field_sets)
        ]
        FrameWriter(ours).send([Events(events)])
        received = FrameReader(theirs).receive()
    finally:
        ours.close()
        theirs.close()
    assert received is not None
    (got,) = received
    assert isinstance(got, Events)
    assert [(e.action, e.message, e.time_ns, e.level) for e in got.events] == [
        (e.action, e.message, e.time_ns, e.level) for e in events
    ]
    assert [repr(e.fields) for e in got.events] == [repr(e.fields) for e in events]


def test_end_of_file_and_a_cut_frame_read_as_the_end(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    writer = FrameWriter(ours)
    writer.send([Wake()])
    ours.sendall(b"\x00\x00\x01\x00partial")  # a frame of 256 bytes, cut short by a crash
    ours.close()
    reader = FrameReader(theirs)
    assert reader.receive() == [Wake()]
    assert reader.receive() is None


class FakeWorker:
    """What the link's receiver calls on the worker."""

    def __init__(self) -> None:
        self.worker_id = "host:9:0"
        self.calls: list[tuple[Any, ...]] = []
        self.store = self

    def wake_waiters(self) -> None:
        self.calls.append(("wake",))

    def interrupt(self, job_id: str | None = None) -> bool:
        self.calls.append(("interrupt", job_id))
        return True

    def request_free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        self.calls.append(("free", unload_models, free_memory))


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_the_worker_end_forwards_reports_and_applies_commands(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server_sock, worker_sock = pair
    gone: list[bool] = []
    link = ServerLink(worker_sock, on_server_gone=lambda: gone.append(True))
    bus = EventBus()
    link.forward(bus)
    worker = FakeWorker()
    stops: list[Stop] = []
    link.serve(worker, stops.append)  # type: ignore[arg-type]
    job = queued_job()
    link.job_started(job)
    bus.emit(event(Action.NODE_STARTED))
    bus.emit(event())
    link.job_finished(job, outcome())
    commands = FrameWriter(server_sock)
    commands.send([Wake(), Interrupt("job-1"), Free(True, True)])
    commands.send([Stop(1.0)])
    wait_for(lambda: len(stops) == 1)
    assert worker.calls == [("wake",), ("interrupt", "job-1"), ("free", True, True)]
    link.close()
    reader = FrameReader(server_sock)
    received: list[Any] = []
    while (messages := reader.receive()) is not None:
        received.extend(messages)
    kinds = [type(m).__name__ for m in received]
    # Reports keep their order; consecutive events share one message.
    assert kinds == ["Ready", "JobStarted", "Events", "JobFinished"]
    assert [e.action for e in received[2].events] == [Action.NODE_STARTED, Action.NODE_SUCCEEDED]
    server_sock.close()
    time.sleep(0.05)
    assert gone == []  # the link was closed on purpose: no alarm


def test_waiting_goes_at_once_with_what_lingers(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports linger to share a frame, but `Waiting` ends the linger: the server wakes only a
    child that said it waits, so a job submitted meanwhile must not wait for the linger."""
    monkeypatch.setattr(server_link, "LINGER_S", 30.0)
    server_sock, worker_sock = pair
    link = ServerLink(worker_sock, on_server_gone=lambda: None)
    bus = EventBus()
    link.forward(bus)
    server_sock.settimeout(10.0)
    reader = FrameReader(server_sock)
    bus.emit(event())  # lingers (30 s here)...
    link.worker_waiting()  # ...until this
    began = time.monotonic()
    received = reader.receive()
    assert time.monotonic() - began < 5.0
    assert received is not None
    assert [type(m).__name__ for m in received] == ["Events", "Waiting"]
    link.close(0.0)


def test_the_worker_end_notices_a_vanished_server(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server_sock, worker_sock = pair
    gone = threading.Event()
    link = ServerLink(worker_sock, on_server_gone=gone.set)
    link.serve(FakeWorker(), lambda _stop: None)  # type: ignore[arg-type]
    server_sock.close()  # the server process died
    assert gone.wait(5.0)
    link.close(1.0)
