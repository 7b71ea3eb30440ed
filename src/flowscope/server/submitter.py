"""Storing submitted jobs from the event loop without blocking it: one thread commits whatever
requests are waiting as one batch (group commit) and resolves their futures in one callback.

A thread-pool call per request would cost two thread hand-offs per request; here a burst of
concurrent `POST /prompt`s shares one wake-up, one commit and one hand-back.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading

from flowscope.jobs.model import NewJob, QueuedJob
from flowscope.jobs.store import JobStore

MAX_BATCH = 256

_Waiting = tuple[NewJob, asyncio.Future[QueuedJob], asyncio.AbstractEventLoop]


class Submitter:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="flowscope-submit", daemon=True)
        self._thread.start()

    async def submit(self, job: NewJob) -> QueuedJob:
        """The stored job, once committed; raises what `JobStore.submit` would."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[QueuedJob] = loop.create_future()
        self._queue.put((job, future, loop))
        return await future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Waiting]) -> None:
        try:
            results: list[QueuedJob | BaseException] = self.store.submit_many(
                [job for job, _future, _loop in batch]
            )
        except BaseException as exc:  # the store is closed or unreachable
            results = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[QueuedJob], object]]]
        by_loop = {}
        for (_job, future, loop), result in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((future, result))
        for loop, resolved in by_loop.items():
            # RuntimeError: that loop has closed, so nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, resolved)


def _resolve(resolved: list[tuple[asyncio.Future[QueuedJob], object]]) -> None:
    for future, result in resolved:
        if future.done():  # the request was cancelled (client gone)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            assert isinstance(result, QueuedJob)
            future.set_result(result)
