"""The queue's voice: the job.* events of the store (queued, cancelled, re-queued, lost) and the
worker.* events, with the job's identity fields (telemetry spec §1-2). The engine emits the
events of a job's run itself."""

from __future__ import annotations

import time
from typing import Any

from flowscope.telemetry.bus import EventBus
from flowscope.telemetry.events import Action, Event, Level, Outcome

WORKER_ID = "worker.id"


def job_fields(
    job_id: str,
    workflow_id: str | None,
    user_id: str | None,
    trace_id: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"job.id": job_id}
    if workflow_id is not None:
        fields["workflow.id"] = workflow_id
    if user_id is not None:
        fields["user.id"] = user_id
    if trace_id is not None:
        fields["trace.id"] = trace_id
    return fields


def emit(
    bus: EventBus | None,
    action: Action,
    message: str,
    fields: dict[str, Any],
    *,
    level: Level = Level.INFO,
    detail: dict[str, Any] | None = None,
) -> None:
    if bus is None or not bus.has_subscribers:
        return
    bus.emit(Event(action, message, time.time_ns(), level, fields, detail))


def job_queued(bus: EventBus | None, fields: dict[str, Any], number: float) -> None:
    fields["event.outcome"] = Outcome.SUCCESS.value
    fields["job.priority"] = number
    emit(bus, Action.JOB_QUEUED, "job queued", fields)


def job_cancelled(bus: EventBus | None, fields: dict[str, Any]) -> None:
    fields["event.outcome"] = Outcome.FAILURE.value
    emit(bus, Action.JOB_CANCELLED, "job cancelled while queued", fields)


def job_rejected(
    bus: EventBus | None, fields: dict[str, Any], error_type: str, message: str
) -> None:
    """A submission that failed validation: never stored, so never queued."""
    fields["event.outcome"] = Outcome.FAILURE.value
    fields["error.type"] = error_type
    fields["error.message"] = message
    emit(bus, Action.JOB_REJECTED, "job rejected", fields, level=Level.WARN)


def job_requeued(
    bus: EventBus | None, fields: dict[str, Any], worker_id: str | None, reason: str
) -> None:
    fields["event.outcome"] = Outcome.UNKNOWN.value
    if worker_id is not None:
        fields[WORKER_ID] = worker_id
    emit(
        bus,
        Action.JOB_REQUEUED,
        f"job re-queued ({reason})",
        fields,
        level=Level.WARN,
    )


def job_lost(
    bus: EventBus | None,
    fields: dict[str, Any],
    worker_id: str | None,
    error: dict[str, Any],
) -> None:
    """A job whose worker was lost after its re-queue: failed without running to the end."""
    fields["event.outcome"] = Outcome.FAILURE.value
    fields["error.type"] = error["exception_type"]
    fields["error.message"] = error["exception_message"]
    if worker_id is not None:
        fields[WORKER_ID] = worker_id
    emit(
        bus,
        Action.JOB_FAILED,
        "job failed: its worker was lost twice",
        fields,
        level=Level.ERROR,
        detail={"error": error, "status": "error"},
    )


def worker_event(bus: EventBus | None, action: Action, worker_id: str, message: str) -> None:
    emit(bus, action, message, {WORKER_ID: worker_id})
