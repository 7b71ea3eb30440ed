"""The worker process's end of its link to the server (`flowscope worker --link-fd N`).

Everything the worker does goes up the link: each event of its bus, and each job started and
finished (the server turns them into WebSocket messages, metrics and logs, so a child worker
needs no telemetry of its own). The server's commands come down and are applied to the worker.
If the server dies, the link reads end-of-file and the worker process ends at once, leaving its
job to be re-queued by the next server, as if the worker had died with it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

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
from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Event
from flowscope.telemetry.ids import uuid7

if TYPE_CHECKING:
    from flowscope.jobs.worker import Worker

EXIT_SERVER_GONE = 3
LINGER_S = 0.005  # how long the first report waits for others to share its frame


def _exit_now() -> None:
    os._exit(EXIT_SERVER_GONE)  # no cleanup: the job stays running for recovery to re-queue


class ServerLink:
    """A worker listener and a bus subscriber that report to the server, and the reader of the
    server's commands."""

    def __init__(self, sock: socket.socket, *, on_server_gone: Callable[[], None] = _exit_now):
        self._sock = sock
        self._writer = FrameWriter(sock)
        self._reader = FrameReader(sock)
        self._on_server_gone = on_server_gone
        self._cond = threading.Condition()
        self._pending: list[Message | Event] = []
        self._now = False  # something pending must go without the linger
        self._closing = False
        self._sender_idle = False
        self._sender = threading.Thread(
            target=self._send_loop, name="flowscope-link-send", daemon=True
        )
        self._receiver: threading.Thread | None = None
        self._sender.start()

    @classmethod
    def from_fd(cls, fd: int) -> ServerLink:
        return cls(socket.socket(fileno=fd))

    # -- up: what the worker did -----------------------------------------------------------
    def forward(self, bus: EventBus) -> Callable[[], None]:
        """Send every event of `bus` to the server; returns the unsubscriber."""
        return bus.subscribe(self._put_event)

    def _put_event(self, event: Event) -> None:
        # Stamped here rather than by the server's pipeline (which keeps an id it finds): one
        # thing less for the server's interpreter to do per event.
        fields = event.fields
        if fields is None:
            fields = event.fields = {}
        if "event.id" not in fields:
            fields["event.id"] = uuid7()
        self._put(event)

    def job_started(self, job: QueuedJob) -> None:
        self._put(JobStarted(job))

    def job_finished(self, job: QueuedJob, outcome: JobOutcome) -> None:
        self._put(JobFinished(job, outcome))

    def worker_waiting(self) -> None:
        # The server wakes only a child that said it waits, so this goes at once, with what
        # lingers (nothing more is coming: the worker is idle).
        self._put(Waiting(), now=True)

    def _put(self, item: Message | Event, *, now: bool = False) -> None:
        with self._cond:
            self._pending.append(item)
            self._now = self._now or now
            if now or self._sender_idle:  # else not while it lingers: that would end it
                self._cond.notify()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._sender_idle = True
                    self._cond.wait()
                self._sender_idle = False
                if not self._closing and not self._now:
                    # Let the rest of a job's reports join this frame: each frame costs the
                    # server a wake-up, which small jobs would otherwise pay several times.
                    self._cond.wait(LINGER_S)
                batch, self._pending = self._pending, []
                self._now = False
            if not batch:
                return  # closing, and everything is sent
            try:
                self._writer.send(_grouped(batch))
            except OSError:
                return  # the server has gone: the receiver sees end-of-file

    # -- down: the server's commands -------------------------------------------------------
    def serve(self, worker: Worker, on_stop: Callable[[Stop], None]) -> None:
        """Apply the server's commands to `worker` from now on, and tell the server it is up."""
        self._put(Ready(worker.worker_id))
        self._receiver = threading.Thread(
            target=self._receive_loop,
            args=(worker, on_stop),
            name="flowscope-link-receive",
            daemon=True,
        )
        self._receiver.start()

    def _receive_loop(self, worker: Worker, on_stop: Callable[[Stop], None]) -> None:
        while (messages := self._reader.receive()) is not None:
            for message in messages:
                if isinstance(message, Wake):
                    worker.store.wake_waiters()
                elif isinstance(message, Interrupt):
                    worker.interrupt(message.job_id)
                elif isinstance(message, Free):
                    worker.request_free(message.unload_models, message.free_memory)
                elif isinstance(message, Stop):
                    on_stop(message)
        with self._cond:
            closing = self._closing
        if not closing:
            self._on_server_gone()

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is pending, then end the link (the server reads end-of-file)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._sender.join(timeout_s)
        with contextlib.suppress(OSError):  # the server has gone already
            self._sock.shutdown(socket.SHUT_WR)


def _grouped(batch: list[Message | Event]) -> list[Message]:
    """Consecutive events as one `Events` message: one pickled list instead of many."""
    messages: list[Message] = []
    for item in batch:
        if isinstance(item, Event):
            last = messages[-1] if messages else None
            if isinstance(last, Events):
                last.events.append(item)
            else:
                messages.append(Events([item]))
        else:
            messages.append(item)
    return messages
