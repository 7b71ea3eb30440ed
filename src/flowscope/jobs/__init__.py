"""The durable job queue and history, leases and workers (SQLite embedded; portable SQL).

`JobStore` holds the queue and the history; `Worker` runs jobs from it on an executor. `Worker`
is imported on first use: it pulls in the engine (and torch), which a process that only submits
or reads jobs does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowscope.jobs.leases import make_worker_id, worker_alive
from flowscope.jobs.migrate import SchemaVersionError
from flowscope.jobs.model import (
    FINISHED_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    NewJob,
    QueuedJob,
)
from flowscope.jobs.recovery import MAX_ATTEMPTS, RecoveredJob
from flowscope.jobs.store import JobStore
from flowscope.jobs.submits import DuplicateJobError

if TYPE_CHECKING:
    from flowscope.jobs.worker import Worker, WorkerListener

__all__ = [
    "FINISHED_STATES",
    "MAX_ATTEMPTS",
    "DuplicateJobError",
    "JobOutcome",
    "JobRecord",
    "JobState",
    "JobStore",
    "NewJob",
    "QueuedJob",
    "RecoveredJob",
    "SchemaVersionError",
    "Worker",
    "WorkerListener",
    "make_worker_id",
    "worker_alive",
]


def __getattr__(name: str) -> Any:
    if name in ("Worker", "WorkerListener"):
        from flowscope.jobs import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
