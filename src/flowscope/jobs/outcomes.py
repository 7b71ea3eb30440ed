"""How a claimed job ended, as a `JobOutcome`: from the executor's `JobResult`, from a prompt
that no longer validates, or from an exception that escaped the executor.

The status messages are ComfyUI's (spec §3.8): execution_start, execution_cached, then
execution_success, execution_error or execution_interrupted. The details (kept under the history
entry's `flowscope` key) add what ComfyUI never records: per-node timings and memory, the
worker, the attempt and the trace id.
"""

from __future__ import annotations

import traceback
from typing import Any

from flowscope.engine.job import JobResult, NodeRecord
from flowscope.graph.validation import ValidationResult
from flowscope.jobs.model import JobOutcome, QueuedJob
from flowscope.telemetry.events import qualified_name

INVALID_PROMPT_MESSAGE = (
    "the prompt is no longer valid (a node pack may have changed since it was queued)"
)


def result_outcome(
    job: QueuedJob, result: JobResult, worker_id: str, started_at_ms: int, finished_at_ms: int
) -> JobOutcome:
    messages = _start_messages(job.job_id, started_at_ms, result.cached_nodes)
    if result.status == "success":
        messages.append(
            ["execution_success", {"prompt_id": job.job_id, "timestamp": finished_at_ms}]
        )
    else:
        kind = "execution_error" if result.status == "error" else "execution_interrupted"
        payload = {"prompt_id": job.job_id, "timestamp": finished_at_ms, **(result.error or {})}
        messages.append([kind, payload])
    return JobOutcome(
        state=result.status,
        outputs=result.outputs,
        meta=result.meta,
        messages=messages,
        started_at_ms=started_at_ms,
        finished_at_ms=finished_at_ms,
        details=details(job, worker_id, result.duration_ms, result.nodes),
    )


def invalid_outcome(
    job: QueuedJob,
    validation: ValidationResult,
    worker_id: str,
    started_at_ms: int,
    finished_at_ms: int,
) -> JobOutcome:
    """The stored prompt failed validation when a worker took it."""
    node_id, node_type, reason = _first_problem(validation)
    error_type = (validation.error or {}).get("type") or "prompt_outputs_failed_validation"
    payload = _error_payload(
        job.job_id,
        finished_at_ms,
        message=f"{INVALID_PROMPT_MESSAGE}: {reason}",
        exception_type=str(error_type),
        node_id=node_id,
        node_type=node_type,
    )
    payload["node_errors"] = validation.node_errors
    return _error_outcome(job, worker_id, started_at_ms, finished_at_ms, payload)


def crash_outcome(
    job: QueuedJob,
    exc: BaseException,
    worker_id: str,
    started_at_ms: int,
    finished_at_ms: int,
) -> JobOutcome:
    """An exception escaped the executor (a bug, not a node failure): an error with its
    traceback, so that the worker can go on with the next job."""
    payload = _error_payload(
        job.job_id,
        finished_at_ms,
        message=f"the executor failed: {exc}",
        exception_type=qualified_name(type(exc)),
    )
    payload["traceback"] = traceback.format_tb(exc.__traceback__)
    return _error_outcome(job, worker_id, started_at_ms, finished_at_ms, payload)


def details(
    job: QueuedJob, worker_id: str, duration_ms: float, nodes: list[NodeRecord]
) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "attempts": job.attempts,
        "trace_id": job.trace_id,
        "duration_ms": duration_ms,
        "nodes": [
            {
                "node_id": node.node_id,
                "class_type": node.class_type,
                "title": node.title,
                "status": node.status,
                "duration_ms": node.duration_ms,
                "memory_peak_bytes": node.memory_peak_bytes,
            }
            for node in nodes
        ],
    }


def _start_messages(job_id: str, started_at_ms: int, cached: list[str]) -> list[list[Any]]:
    return [
        ["execution_start", {"prompt_id": job_id, "timestamp": started_at_ms}],
        [
            "execution_cached",
            {"nodes": list(cached), "prompt_id": job_id, "timestamp": started_at_ms},
        ],
    ]


def _error_payload(
    job_id: str,
    timestamp: int,
    *,
    message: str,
    exception_type: str,
    node_id: str | None = None,
    node_type: str | None = None,
) -> dict[str, Any]:
    """ComfyUI's execution_error payload (spec §3.7) for a failure outside any node run."""
    return {
        "prompt_id": job_id,
        "node_id": node_id,
        "node_type": node_type,
        "executed": [],
        "exception_message": message,
        "exception_type": exception_type,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": timestamp,
    }


def _error_outcome(
    job: QueuedJob,
    worker_id: str,
    started_at_ms: int,
    finished_at_ms: int,
    payload: dict[str, Any],
) -> JobOutcome:
    messages = [
        ["execution_start", {"prompt_id": job.job_id, "timestamp": started_at_ms}],
        ["execution_error", payload],
    ]
    return JobOutcome(
        state="error",
        outputs={},
        meta={},
        messages=messages,
        started_at_ms=started_at_ms,
        finished_at_ms=finished_at_ms,
        details=details(job, worker_id, float(finished_at_ms - started_at_ms), []),
    )


def _first_problem(validation: ValidationResult) -> tuple[str | None, str | None, str]:
    """(node id, node type, a sentence) for the first thing validation rejected."""
    for node_id, report in validation.node_errors.items():
        errors = report.get("errors") or [{}]
        first = errors[0]
        text = first.get("message", "invalid input")
        if first.get("details"):
            text = f"{text}: {first['details']}"
        class_type = report.get("class_type")
        return node_id, class_type, f"node {node_id} ({class_type}): {text}"
    error = validation.error or {}
    text = str(error.get("message") or "no output can run")
    if error.get("details"):
        text = f"{text} ({error['details']})"
    return None, None, text
