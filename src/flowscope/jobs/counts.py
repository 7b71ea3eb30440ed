"""What this process knows of the queue's size, and the wake-up of idle workers.

`queue_remaining` is read on every status broadcast, so it must not cost a query. The counts
change with each of this process's writes (applied under the store's write lock, right after the
commit, so in commit order) and are recounted from the database now and then, which picks up
other processes' work. A submit wakes waiting workers at once; nothing polls in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum


class Wake(Enum):
    WORK = "work"  # jobs are pending
    WOKEN = "woken"  # wake_all() was called (a worker is stopping, or has a /free to apply)
    TIMEOUT = "timeout"


class QueueCounts:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pending = 0
        self.running = 0
        self.counted_at = float("-inf")  # time.monotonic() of the last recount
        self._wakes = 0

    @property
    def remaining(self) -> int:
        return self.pending + self.running

    def replace(self, pending: int, running: int) -> None:
        """Counts from the database (call with the store's write lock held)."""
        with self._cond:
            self.pending, self.running = pending, running
            self.counted_at = time.monotonic()
            if pending:
                self._cond.notify_all()

    def add(self, *, pending: int = 0, running: int = 0) -> None:
        """This process's own change (call with the store's write lock held)."""
        with self._cond:
            self.pending = max(0, self.pending + pending)
            self.running = max(0, self.running + running)
            if pending > 0:
                self._cond.notify_all()

    def mark_stale(self) -> None:
        """Recount at the next chance: another process changed the queue and said so."""
        with self._cond:
            self.counted_at = float("-inf")

    def no_pending(self) -> None:
        """A claim found the queue empty: that is the truth until the next submit."""
        with self._cond:
            self.pending = 0

    def wake_all(self) -> None:
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()

    def wait(self, timeout_s: float, wake_when: Callable[[], bool] | None = None) -> Wake:
        """Until jobs are pending, wake_all() is called, `wake_when()` is true, or `timeout_s`
        passes. `wake_when` is checked under the lock that wake_all() takes, so a caller that
        sets its flag and then calls wake_all() is never missed."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            wakes = self._wakes
            while not self.pending:
                if self._wakes != wakes or (wake_when is not None and wake_when()):
                    return Wake.WOKEN
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Wake.TIMEOUT
                self._cond.wait(remaining)
            return Wake.WORK
