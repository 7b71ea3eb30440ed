"""The durable job queue and history, leases and workers (SQLite embedded; portable SQL).

`JobStore` holds the queue and the history; `Worker` runs jobs from it on an executor, and
`WorkerProcess` runs one in a child process. Names are imported on first use: a server spawns
its worker processes before it imports SQLAlchemy, and `Worker` pulls in the engine, which a
process that only submits or reads jobs does not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowscope.jobs.handles import WorkerHandle, WorkerListener
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
    from flowscope.jobs.worker import Worker
    from flowscope.jobs.worker_process import WorkerProcess

_HOMES = {
    "FINISHED_STATES": "model",
    "MAX_ATTEMPTS": "recovery",
    "DuplicateJobError": "submits",
    "JobOutcome": "model",
    "JobRecord": "model",
    "JobState": "model",
    "JobStore": "store",
    "NewJob": "model",
    "QueuedJob": "model",
    "RecoveredJob": "recovery",
    "SchemaVersionError": "migrate",
    "Worker": "worker",
    "WorkerHandle": "handles",
    "WorkerListener": "handles",
    "WorkerProcess": "worker_process",
    "make_worker_id": "leases",
    "worker_alive": "leases",
}

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
    "WorkerHandle",
    "WorkerListener",
    "WorkerProcess",
    "make_worker_id",
    "worker_alive",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"flowscope.jobs.{home}"), name)
