"""`WorkerProcess`: a worker in a child process (`flowscope worker --link-fd N`), controlled like
a worker thread.

The server's interpreter then only serves HTTP: a worker thread would share its interpreter
lock, and every job it runs would slow the API down. The child reports over its link (link.py):
its events are emitted on the server's bus (so the WebSocket messages, logs, metrics and traces
are the server's, as with a thread), its jobs' starts and ends go to the listener. Commands go
the other way: wake (a job was queued while the child waited; `WakeRule`), interrupt, free, stop.

A child that dies unexpectedly (a node crashed the interpreter, the kernel killed it for memory)
is started again after a pause; its job is re-queued once by recovery, as for any lost worker.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flowscope.jobs import reporting
from flowscope.jobs.handles import WorkerListener
from flowscope.jobs.leases import make_worker_id
from flowscope.jobs.link import (
    LINK_FD_FLAG,
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
from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level

if TYPE_CHECKING:
    from flowscope.jobs.store import JobStore

# After stop's deadline and the worker's own interrupt grace: how long to wait before killing.
KILL_AFTER_S = 10.0
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
# A child that ran this long before dying starts again after the shortest pause.
HEALTHY_RUN_S = 60.0
_WAKE_ACTIONS = (Action.JOB_QUEUED, Action.JOB_REQUEUED)


class WakeRule:
    """When the server wakes its child: only when the child said it waits (`Waiting`). A busy
    child claims the next job by itself, and a wake per submitted burst would cost the server a
    message it can ill afford under load. A job queued while the child seemed busy is
    remembered: the child's empty claim may have come before that job's commit and its
    `Waiting` after it, so that `Waiting` is answered with a wake at once (at worst a needless
    one, costing the child one claim)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # job.queued and the child's reports: different threads
        self._child_waits = False
        self._queued_while_busy = False

    def queued(self) -> bool:
        """A job was queued; True: wake the child now."""
        with self._lock:
            if not self._child_waits:
                self._queued_while_busy = True
                return False
            self._child_waits = False  # woken, it claims until the queue is empty
            return True

    def waiting(self) -> bool:
        """The child found no job and waits; True: wake it now."""
        with self._lock:
            wake = self._queued_while_busy
            self._queued_while_busy = False
            self._child_waits = not wake
            return wake

    def reset(self) -> None:
        """A new child: it claims before it waits."""
        with self._lock:
            self._child_waits = self._queued_while_busy = False


class _Child:
    """One started child process and the server's end of its link."""

    def __init__(self, command: Sequence[str]) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [*command, LINK_FD_FLAG, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.started_at = time.monotonic()
        self.sock = ours
        self.writer = FrameWriter(ours)
        self.reader = FrameReader(ours)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class WorkerProcess:
    def __init__(self, command: Sequence[str], *, kill_after_s: float = KILL_AFTER_S) -> None:
        """`command`: `flowscope worker` with the server's options (folders, store, cache);
        the link's flag and descriptor are added to it."""
        self.command = list(command)
        self.kill_after_s = kill_after_s
        self.listener_errors = 0
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._bus: EventBus | None = None
        self._store: JobStore | None = None
        self._listener: WorkerListener | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._child: _Child | None = None
        self._worker_id = ""
        self._ready = False
        self._current: QueuedJob | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._outbox: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._wakes = WakeRule()
        self.wakes_sent = 0
        self._sender: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------
    def spawn(self) -> None:
        """Start the child process now (its reports wait in the link until `start`): a server
        spawns its workers first, so that they start up while the server does."""
        with self._lock:
            if self._child is not None or self._stopping.is_set():
                return
            child = _Child(self.command)
            self._child = child
            self._wakes.reset()  # a new child claims before it waits
            self._worker_id = make_worker_id(0, pid=child.process.pid)
            self._ready = False
            if self._sender is None:
                self._sender = threading.Thread(
                    target=self._send_loop, name="flowscope-worker-link-send", daemon=True
                )
                self._sender.start()

    def attach(
        self, bus: EventBus, store: JobStore, listener: WorkerListener | None = None
    ) -> None:
        """Where the child's reports go: its events onto `bus`, its jobs to `listener`; jobs
        queued in `store` (seen as job.queued / job.requeued events on `bus`) wake it."""
        self._bus, self._store, self._listener = bus, store, listener
        self._unsubscribe.append(bus.subscribe(self._on_queued, _WAKE_ACTIONS))

    # -- state ----------------------------------------------------------------------------
    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None else None

    @property
    def started(self) -> bool:
        return self._supervisor is not None

    @property
    def alive(self) -> bool:
        child = self._child
        return self._ready and child is not None and child.process.poll() is None

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def current_job(self) -> QueuedJob | None:
        return self._current

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the child if `spawn` was not called, and take its reports from now on."""
        if self._supervisor is not None:
            raise RuntimeError("this worker process was started already")
        self.spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, name="flowscope-worker-link-receive", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout_s: float = 10.0, *, interrupt: bool = False) -> bool:
        """Ask the child to stop as a worker thread would (finish or interrupt the running job,
        then exit); kill it if it has not ended `kill_after_s` after the deadline. True when
        the child has ended; its last reports have been handled by then."""
        with self._lock:
            self._stopping.set()  # under the lock: no child is spawned after this
            child = self._child
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if child is None:
            return True
        if self._supervisor is None:
            self.start()  # someone must read the child's last reports, or it cannot exit
        self._outbox.put(Stop(timeout_s, interrupt))
        supervisor = self._supervisor
        assert supervisor is not None
        supervisor.join((0.0 if interrupt else timeout_s) + self.kill_after_s)
        if supervisor.is_alive():
            child.process.kill()
            supervisor.join(self.kill_after_s)
        self._outbox.put(None)
        return child.process.poll() is not None

    def interrupt(self, job_id: str | None = None) -> bool:
        """Sent to the child in any case (it may have started a job not reported yet); True
        when the job it reported running is the one meant."""
        current = self._current
        self._outbox.put(Interrupt(job_id))
        return current is not None and (job_id is None or job_id == current.job_id)

    def request_free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        self._outbox.put(Free(unload_models, free_memory))

    # -- the link -------------------------------------------------------------------------
    def _on_queued(self, _event: Event) -> None:
        if self._wakes.queued():
            self._wake()

    def _wake(self) -> None:
        self.wakes_sent += 1
        self._outbox.put(Wake())

    def _send_loop(self) -> None:
        while (message := self._outbox.get()) is not None:
            child = self._child
            if child is None:
                continue
            with contextlib.suppress(OSError):  # the child has gone; the supervisor restarts it
                child.writer.send([message])

    def _supervise(self) -> None:
        failures = 0  # deaths in a row of children that did not run for long
        while True:
            with self._lock:
                child = self._child
            if child is not None:
                self._read(child)
                self.last_exit_code = child.process.wait()
                child.close()
                with self._lock:
                    self._child = None
                self._child_ended()
                healthy = time.monotonic() - child.started_at >= HEALTHY_RUN_S
                failures = 0 if healthy else failures + 1
            pause = RESTART_BACKOFF_S[min(max(failures, 1), len(RESTART_BACKOFF_S)) - 1]
            if self._stopping.is_set() or self._stopping.wait(pause):
                return
            try:
                self.spawn()
                self.restarts += 1
            except OSError:  # cannot start a process now (out of memory, say): pause, retry
                failures += 1

    def _read(self, child: _Child) -> None:
        while (messages := child.reader.receive()) is not None:
            for message in messages:
                self._handle(message)

    def _handle(self, message: Message) -> None:
        if isinstance(message, Events):
            bus = self._bus
            if bus is not None:
                for event in message.events:
                    bus.emit(event)
        elif isinstance(message, Waiting):
            if self._wakes.waiting():
                self._wake()
        elif isinstance(message, JobStarted):
            self._current = message.job
            if self._listener is not None:
                self._notify(lambda listener: listener.job_started(message.job))
        elif isinstance(message, JobFinished):
            self._current = None
            if self._store is not None:
                self._store.recount_soon()
            if self._listener is not None:
                job, outcome = message.job, message.outcome
                self._notify(lambda listener: listener.job_finished(job, outcome))
        elif isinstance(message, Ready):
            self._worker_id = message.worker_id
            self._ready = True

    def _child_ended(self) -> None:
        """The child exited: if it was not asked to, say so (its job is left to recovery)."""
        self._ready = False
        self._current = None
        if self._store is not None:
            self._store.recount_soon()
        if not self._stopping.is_set():
            reporting.emit(
                self._bus,
                Action.WORKER_STOPPED,
                f"worker process exited unexpectedly (exit code {self.last_exit_code}); "
                "starting it again",
                {reporting.WORKER_ID: self._worker_id},
                level=Level.ERROR,
            )

    def _notify(self, call: Callable[[WorkerListener], None]) -> None:
        assert self._listener is not None
        try:
            call(self._listener)
        except Exception:  # a listener must not stop the link
            self.listener_errors += 1
