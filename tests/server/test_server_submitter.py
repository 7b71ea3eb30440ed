"""The batching submitter: concurrent submissions from the event loop share commits, each
caller gets its own job or its own error."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from flowscope.jobs import DuplicateJobError, JobStore, NewJob
from flowscope.server.submitter import Submitter


def job(job_id: str | None = None) -> NewJob:
    prompt = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}}
    return NewJob(job_id=job_id or str(uuid.uuid4()), prompt=prompt, outputs=["1"])


def test_concurrent_submissions_are_stored_in_order_with_their_own_results(
    tmp_path: Path,
) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    submitter = Submitter(store)
    taken = str(uuid.uuid4())
    store.submit(job(taken))

    async def scenario() -> list[object]:
        jobs = [job() for _ in range(50)] + [job(taken)]
        return await asyncio.gather(
            *(submitter.submit(item) for item in jobs), return_exceptions=True
        )

    try:
        results = asyncio.run(scenario())
        queued, duplicate = results[:-1], results[-1]
        assert isinstance(duplicate, DuplicateJobError)
        numbers = [item.number for item in queued]  # type: ignore[attr-defined]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == 50
        _running, pending = store.queue()
        assert len(pending) == 51
    finally:
        submitter.close()
        store.close()


def test_a_closed_store_fails_the_waiting_request(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    submitter = Submitter(store)
    store.close()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            asyncio.run(submitter.submit(job()))
    finally:
        submitter.close()
