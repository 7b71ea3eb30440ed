"""`LogStoreSink`: the telemetry sink that indexes events into the local log store.

The emitting thread only enqueues (QueuedSink). The sink's thread hands each batch to the
store's writer process (writer.py), which builds the rows (row_plans.py) and inserts them, one
transaction per batch, while the next batch is taken apart; every `prune_interval_s` it deletes
events older than `retention`. With `separate_process=False` the sink's thread inserts
itself (SQLite's work then shares this process's interpreter lock with the jobs).

A batch counts as written once handed over; a batch the writer then fails to store is counted
in `dropped` (and taken off `written`) when the writer reports it: at least once a second,
and before `wait_idle` returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from flowscope.logstore.dates import NS_PER_S
from flowscope.logstore.row_plans import Record
from flowscope.logstore.store import LogStore
from flowscope.logstore.writer import WriterError, WriterProcess
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.events import Event
from flowscope.telemetry.sinks.queued import QueuedSink

RESTART_INTERVAL_S = 1.0  # a writer process that died is started again at most this often
SYNC_INTERVAL_S = 1.0  # how often the writer is asked what became of the rows it was sent


class LogStoreSink(QueuedSink):
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        service: ServiceInfo | None = None,
        retention: timedelta | None = None,
        prune_interval_s: float = 3600.0,
        name: str = "logstore",
        capacity: int = 100_000,
        batch_size: int = 5_000,
        flush_interval_s: float = 0.05,
        separate_process: bool = True,
    ) -> None:
        super().__init__(
            name, capacity=capacity, batch_size=batch_size, flush_interval_s=flush_interval_s
        )
        # Opened here, so that a bad path or a foreign file fails at start-up, not in the
        # thread; it is also the connection to read the store through (`sink.store.search`).
        self.store = LogStore(path)
        self.retention = retention
        self.prune_interval_s = prune_interval_s
        self.pruned = 0
        self.separate_process = separate_process
        self._static_fields = (service or ServiceInfo()).fields()
        self._next_prune = time.monotonic()  # the first flush applies the retention
        self._writer: WriterProcess | None = None
        self._writer_started = 0.0
        self._next_sync = 0.0
        # wait_idle() asks the sink's thread for a sync; it is done once `_synced` reaches it.
        self._sync_lock = threading.Lock()
        self._sync_requested = 0
        self._synced = 0
        self._close_timeout_s = 5.0
        if separate_process:
            self._writer = self._start_writer()  # starts up while the caller goes on

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id (None when the sink writes itself, or between writers)."""
        return self._writer.pid if self._writer is not None else None

    # -- the sink's thread --------------------------------------------------------------
    def write_batch(self, events: Sequence[Event]) -> None:
        records: list[Record] = [
            (event.time_ns, event.level._value_, event.action._value_, event.message, event.fields)
            for event in events
        ]
        if not self.separate_process:
            self.store.insert_records(records, self._static_fields)
            return
        writer = self._live_writer()
        try:
            writer.insert(records)
        except WriterError:
            self._writer_lost(writer)
            raise

    def flush(self) -> None:
        if self.separate_process and self._writer is not None:
            requested = self._sync_requested
            if requested > self._synced or time.monotonic() >= self._next_sync:
                self._sync(self._writer)
                self._synced = requested
        if self.retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_interval_s
        cutoff_ns = time.time_ns() - int(self.retention.total_seconds() * NS_PER_S)
        if self.separate_process:
            self.pruned += self._live_writer().prune_before(cutoff_ns)
        else:
            self.pruned += self.store.prune_before(cutoff_ns)

    def _sync(self, writer: WriterProcess) -> None:
        self._next_sync = time.monotonic() + SYNC_INTERVAL_S
        try:
            synced = writer.sync()
        except WriterError:
            self._writer_lost(writer)
            raise
        if synced.failed:
            self.dropped += synced.failed
            self.written -= synced.failed
            self.last_error = synced.error

    def _writer_lost(self, writer: WriterProcess) -> None:
        """The writer died: the rows it had not confirmed are lost (they were counted as
        written); a later batch starts a new one."""
        self.dropped += writer.unconfirmed
        self.written -= writer.unconfirmed
        writer.unconfirmed = 0
        if not writer.alive:
            writer.close(0.0)
            self._writer = None

    def _live_writer(self) -> WriterProcess:
        if self._writer is not None and self._writer.alive:
            return self._writer
        if self._writer is not None:
            self._writer_lost(self._writer)
        if time.monotonic() - self._writer_started < RESTART_INTERVAL_S:
            raise WriterError("the log store writer process stopped; restarting it")
        self._writer = self._start_writer()
        return self._writer

    def _start_writer(self) -> WriterProcess:
        self._writer_started = time.monotonic()
        return WriterProcess(self.store.path, self._static_fields)

    # -- lifecycle ----------------------------------------------------------------------
    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until everything offered so far is stored (committed by the writer)."""
        if not self.separate_process:
            return super().wait_idle(timeout_s)
        deadline = time.monotonic() + timeout_s
        if self._hand_over is not None:
            self._hand_over()  # first: the sync asked for below must come after these events
        with self._sync_lock:
            self._sync_requested += 1
            ticket = self._sync_requested
        self._arrived.set()  # a round of the sink's thread, even with nothing queued
        if not super().wait_idle(timeout_s):
            return False
        while self._synced < ticket and time.monotonic() < deadline:
            if self._writer is None:
                return not self._queue  # nothing to sync: the writer died (counted)
            self._wake.set()
            self._arrived.set()
            time.sleep(0.005)
        return self._synced >= ticket

    def close_output(self) -> None:
        writer = self._writer
        try:
            if writer is not None:
                try:
                    self._sync(writer)  # counts what failed, before the writer goes
                finally:
                    writer.close(self._close_timeout_s)
        finally:
            self.store.close()

    def close(self, timeout_s: float = 5.0) -> None:
        self._close_timeout_s = timeout_s  # close_output() takes no arguments
        super().close(timeout_s)
