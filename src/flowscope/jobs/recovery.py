"""The rules for jobs whose worker was lost: which running jobs count as lost, and what becomes
of them (re-queued once, then failed with a clear history entry).

A job is lost when its lease expired (its worker stopped renewing it) or when its worker is
known dead (`leases.worker_alive`). A lost job goes back to the queue, keeping its priority,
while it has been claimed fewer than `MAX_ATTEMPTS` times; after that it is finished as an error,
so a job that kills its worker cannot kill every worker in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from flowscope.jobs import statements as sql
from flowscope.jobs.history import entry_text
from flowscope.jobs.model import JobOutcome
from flowscope.jobs.rows import dumps, loads

if TYPE_CHECKING:
    from flowscope.jobs.rows import AnyRow

MAX_ATTEMPTS = 2
LOST_WORKER_ERROR = "flowscope.WorkerLost"

LossReason = Literal["worker died", "lease expired"]


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """What `JobStore.recover` did with one lost job."""

    job_id: str
    worker_id: str | None
    reason: LossReason
    requeued: bool  # False: it had been retried already and was finished as an error

    def __str__(self) -> str:
        action = "re-queued" if self.requeued else "failed"
        return f"{self.job_id} ({action}; worker {self.worker_id}: {self.reason})"


def loss_reason(
    worker_id: str | None, lease_expires_at_ms: int | None, now_ms: int, alive: bool
) -> LossReason | None:
    """Why a running job counts as lost, or None while its worker may still be on it."""
    if worker_id is None or not alive:
        return "worker died"
    if lease_expires_at_ms is None or lease_expires_at_ms < now_ms:
        return "lease expired"
    return None


def requeue_note(worker_id: str | None, reason: str, now_ms: int) -> dict[str, Any]:
    """What the job's history will say about this re-queue (under `flowscope.requeued`)."""
    return {"at_ms": now_ms, "worker_id": worker_id, "reason": reason}


def lost_worker_outcome(
    job_id: str,
    worker_id: str | None,
    reason: LossReason,
    attempts: int,
    started_at_ms: int | None,
    now_ms: int,
) -> JobOutcome:
    """The history of a job whose worker was lost again after its re-queue: an
    `execution_error` that says so, in ComfyUI's payload shape."""
    message = (
        f"the worker running this job died twice (last: worker {worker_id}, {reason}); not retried"
    )
    error: dict[str, Any] = {
        "prompt_id": job_id,
        "node_id": None,
        "node_type": None,
        "executed": [],
        "exception_message": message,
        "exception_type": LOST_WORKER_ERROR,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": now_ms,
    }
    return JobOutcome(
        state="error",
        outputs={},
        meta={},
        messages=[["execution_error", error]],
        started_at_ms=started_at_ms if started_at_ms is not None else now_ms,
        finished_at_ms=now_ms,
        details={"worker_id": worker_id, "attempts": attempts, "error": message},
    )


# (connection, job id, from state, outcome, history entry text, notes JSON)
WriteFinished = Callable[[sa.Connection, str, str, JobOutcome, str, str | None], None]


@dataclass(frozen=True, slots=True)
class Recovery:
    """One lost job dealt with, and what to report about it."""

    job: RecoveredJob
    row: AnyRow  # of statements.RUNNING: the job's identity fields
    failure: JobOutcome | None  # None: re-queued


def recover_lost(
    connection: sa.Connection,
    is_alive: Callable[[str], bool],
    now_ms: int,
    write_finished: WriteFinished,
) -> list[Recovery]:
    """Re-queue or fail every lost running job, in the caller's write transaction."""
    liveness: dict[str, bool] = {}
    recovered: list[Recovery] = []
    for row in connection.execute(sql.RUNNING).all():
        worker = row.worker_id
        if worker is not None and worker not in liveness:
            liveness[worker] = is_alive(worker)
        alive = worker is not None and liveness[worker]
        reason = loss_reason(worker, row.lease_expires_at_ms, now_ms, alive)
        if reason is None:
            continue
        notes = [*loads(row.notes, []), requeue_note(worker, reason, now_ms)]
        failure = None
        if row.attempts < MAX_ATTEMPTS:
            connection.execute(
                sql.REQUEUE, {"p_job_id": row.job_id, "p_attempts": 0, "p_notes": dumps(notes)}
            )
        else:
            failure = lost_worker_outcome(
                row.job_id, worker, reason, row.attempts, row.started_at_ms, now_ms
            )
            stored = connection.execute(sql.FINISH_READ, {"p_job_id": row.job_id}).one()
            text = entry_text(
                number=stored.number,
                job_id=row.job_id,
                prompt_json=stored.prompt or "{}",
                extra_data_json=stored.extra_data,
                outputs_json=stored.outputs,
                outcome=failure,
                notes=notes[:-1],  # the earlier re-queue; this loss is the error itself
            )
            write_finished(connection, row.job_id, "running", failure, text, dumps(notes))
        job = RecoveredJob(row.job_id, worker, reason, requeued=failure is None)
        recovered.append(Recovery(job, row, failure))
    return recovered
