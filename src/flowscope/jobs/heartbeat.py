"""The heartbeat: renews the running job's lease from its own thread while a node computes.

One long-lived thread per worker (starting a thread per job would cost more than a small job).
If a renewal finds the job is no longer the worker's (its lease expired and the job was
re-queued), `on_lost` is called so that the worker can stop duplicate work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Heartbeat:
    def __init__(
        self,
        renew: Callable[[str], bool],
        on_lost: Callable[[str], None],
        interval_s: float,
        *,
        name: str = "flowscope-heartbeat",
    ) -> None:
        self._renew = renew
        self._on_lost = on_lost
        self.interval_s = interval_s
        self._cond = threading.Condition()
        self._job_id: str | None = None
        self._due = 0.0
        self._closed = False
        self.errors = 0  # renewals that raised (the database was busy or gone); retried
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, job_id: str) -> None:
        """Renew `job_id`'s lease every interval from now on."""
        with self._cond:
            self._job_id = job_id
            self._due = time.monotonic() + self.interval_s
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._job_id = None
            self._cond.notify_all()

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._job_id is not None:
                        wait = self._due - time.monotonic()
                        if wait <= 0:
                            break
                    else:
                        wait = None
                    self._cond.wait(wait)
                if self._closed:
                    return
                job_id = self._job_id
                self._due = time.monotonic() + self.interval_s
            assert job_id is not None
            try:
                renewed = self._renew(job_id)
            except Exception:
                self.errors += 1
                continue
            if not renewed:
                with self._cond:
                    still_current = self._job_id == job_id
                    if still_current:
                        self._job_id = None
                if still_current:
                    self._on_lost(job_id)
