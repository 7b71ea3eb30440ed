"""`LogStoreSink`: the telemetry sink that indexes events into the local log store.

The emitting thread only enqueues (QueuedSink); the sink's thread writes each batch in one
transaction and, every `prune_interval_s`, deletes events older than `retention`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import timedelta

from flowscope.logstore.store import LogStore
from flowscope.telemetry.document import ServiceInfo
from flowscope.telemetry.events import Event
from flowscope.telemetry.sinks.queued import QueuedSink


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
        batch_size: int = 1_000,
        flush_interval_s: float = 0.2,
    ) -> None:
        super().__init__(
            name, capacity=capacity, batch_size=batch_size, flush_interval_s=flush_interval_s
        )
        # Opened here, so that a bad path or a foreign file fails at start-up, not in the thread.
        self.store = LogStore(path)
        self.retention = retention
        self.prune_interval_s = prune_interval_s
        self.pruned = 0
        self._static_fields = (service or ServiceInfo()).fields()
        self._next_prune = time.monotonic()  # the first flush applies the retention

    def write_batch(self, events: Sequence[Event]) -> None:
        self.store.insert_events(events, self._static_fields)

    def flush(self) -> None:
        if self.retention is not None and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_interval_s
            self.pruned += self.store.prune(self.retention)

    def close_output(self) -> None:
        self.store.close()
