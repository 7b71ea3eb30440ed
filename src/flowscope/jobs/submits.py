"""Group commit of submitted jobs: concurrent `submit` calls share one transaction.

Each caller serializes its job (in its own thread), queues it, and then takes the store's write
lock. Whoever gets the lock first commits every job queued so far, its own and the others', in
one transaction; the callers behind it find their job already committed and return at once. One
submitter alone pays one commit per job, with no hand-off to another thread; eight submitters
share commits, so durable throughput grows with concurrency instead of queueing on the disk.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from flowscope.jobs.model import NewJob, QueuedJob
from flowscope.jobs.rows import dumps, priority
from flowscope.jobs.runner import Runner
from flowscope.jobs.schema import QUEUE_NUMBER, job_counters, jobs
from flowscope.telemetry.ids import new_trace_id


class DuplicateJobError(ValueError):
    """A job with this id is already in the store (queued, running or in the history)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with id {job_id!r} already exists; choose another prompt_id")
        self.job_id = job_id


@dataclass(slots=True)
class PendingSubmit:
    job: NewJob
    row: dict[str, Any]
    done: bool = False
    result: QueuedJob | None = None
    error: BaseException | None = None


def pending_submit(job: NewJob) -> PendingSubmit:
    """Serialize the job now, in the caller's thread, outside the write lock."""
    row = {
        "job_id": job.job_id,
        "number": None,  # assigned in the transaction, from the stored counter
        "state": "pending",
        "prompt": dumps(job.prompt),
        "outputs": dumps(list(job.outputs)),
        "extra_data": dumps(job.extra_data),
        "sensitive": dumps(job.sensitive) if job.sensitive else None,
        "user_id": job.user_id,
        "workflow_id": job.workflow_id,
        # Given now, so that job.queued and the run's events share the job's trace.
        "trace_id": job.trace_id or new_trace_id(),
        "created_at_ms": time.time_ns() // 1_000_000,
        "attempts": 0,
    }
    return PendingSubmit(job, row)


@dataclass
class SubmitQueue:
    """Jobs waiting for the next group commit."""

    _items: list[PendingSubmit] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, item: PendingSubmit) -> None:
        with self._lock:
            self._items.append(item)

    def take_all(self) -> list[PendingSubmit]:
        with self._lock:
            items, self._items = self._items, []
        return items


_INSERT = jobs.insert()
_TAKE_NUMBERS = (
    job_counters.update()
    .where(job_counters.c.name == QUEUE_NUMBER)
    .values(value=job_counters.c.value + sa.bindparam("taken", type_=sa.BigInteger))
)
_TAKE_NUMBERS_RETURNING = _TAKE_NUMBERS.returning(job_counters.c.value)
_READ_COUNTER = sa.select(job_counters.c.value).where(job_counters.c.name == QUEUE_NUMBER)


class BatchWriter:
    """Writes batches of submitted jobs in the caller's transaction: numbers from the stored
    counter, then one multi-row insert."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def commit(
        self, connection: sa.Connection, batch: list[PendingSubmit], *, check_duplicates: bool
    ) -> list[PendingSubmit]:
        """Insert the batch; returns the accepted items (duplicates get a DuplicateJobError when
        `check_duplicates`, else an IntegrityError fails the whole batch)."""
        accepted = _without_duplicates(connection, batch) if check_duplicates else batch
        counted = sum(1 for item in accepted if item.job.number is None)
        counter = self._take_numbers(connection, counted) if counted else 0
        for item in accepted:
            job = item.job
            if job.number is not None:
                item.row["number"] = float(job.number)
            else:
                # ComfyUI: the counter grows by one per submit without a number; front negates.
                item.row["number"] = float(-counter if job.front else counter)
                counter += 1
        if accepted:
            self.runner.executemany(connection, _INSERT, [item.row for item in accepted])
        return accepted

    def _take_numbers(self, connection: sa.Connection, count: int) -> int:
        """Reserve `count` values of the stored counter; returns the first. One atomic UPDATE,
        so several processes submitting to one database never share a number."""
        values = {"taken": count}
        if self.runner.returning:
            found = self.runner.execute(connection, _TAKE_NUMBERS_RETURNING, values).fetchone()
        else:
            self.runner.execute(connection, _TAKE_NUMBERS, values)
            found = self.runner.execute(connection, _READ_COUNTER, {}).fetchone()
        if found is None:  # the counter row is gone (a hand-edited database): start it again
            connection.execute(job_counters.insert().values(name=QUEUE_NUMBER, value=count))
            return 0
        return int(found[0]) - count


def _without_duplicates(
    connection: sa.Connection, batch: list[PendingSubmit]
) -> list[PendingSubmit]:
    ids = [item.job.job_id for item in batch]
    existing = set(
        connection.execute(sa.select(jobs.c.job_id).where(jobs.c.job_id.in_(ids))).scalars()
    )
    accepted: list[PendingSubmit] = []
    for item in batch:
        job_id = item.job.job_id
        if job_id in existing:
            item.error = DuplicateJobError(job_id)
        else:
            existing.add(job_id)  # a second submit of the same id in this batch
            accepted.append(item)
    return accepted


def queued_result(item: PendingSubmit) -> QueuedJob:
    """What submit returns, built from the job and its row (nothing is read back)."""
    job, row = item.job, item.row
    return QueuedJob(
        number=priority(row["number"]),
        job_id=job.job_id,
        prompt=job.prompt,
        extra_data=job.extra_data,
        outputs=list(job.outputs),
        sensitive=job.sensitive,
        state="pending",
        created_at_ms=row["created_at_ms"],
        attempts=0,
        user_id=job.user_id,
        workflow_id=job.workflow_id,
        trace_id=row["trace_id"],
    )
