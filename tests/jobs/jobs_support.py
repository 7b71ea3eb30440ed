"""Helpers for job store tests: small job and outcome builders."""

from __future__ import annotations

import uuid
from typing import Any

from flowscope.jobs import JobOutcome, JobStore, NewJob

PROMPT = {"1": {"class_type": "StubInt", "inputs": {"value": 1}}}


def new_job(job_id: str | None = None, **fields: Any) -> NewJob:
    fields.setdefault("prompt", PROMPT)
    fields.setdefault("outputs", ["1"])
    return NewJob(job_id=job_id or str(uuid.uuid4()), **fields)


def outcome(state: str = "success", **fields: Any) -> JobOutcome:
    fields.setdefault("outputs", {"1": {"value": [1]}})
    fields.setdefault("meta", {})
    fields.setdefault("messages", [["execution_success", {"timestamp": 2}]])
    fields.setdefault("started_at_ms", 1)
    fields.setdefault("finished_at_ms", 2)
    return JobOutcome(state=state, **fields)  # type: ignore[arg-type]


def run_job(store: JobStore, job_id: str, result: JobOutcome | None = None) -> None:
    """Claim `job_id` (it must be next) and finish it."""
    job = store.claim_next("w", 30)
    assert job is not None and job.job_id == job_id
    assert store.finish(job_id, "w", result or outcome())
